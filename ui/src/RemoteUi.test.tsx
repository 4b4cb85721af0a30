// @vitest-environment-options {"url": "https://mtls.demo.example.test/product/matrix"}
// The page as the host renders it: a host-like i18next instance (its own
// namespace and language, react-i18next bound to it), the four props.
import { act, cleanup, fireEvent, render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import i18next, { type i18n as I18n } from "i18next";
import { I18nextProvider, initReactI18next } from "react-i18next";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import en from "./locales/en.json";
import fi from "./locales/fi.json";
import sv from "./locales/sv.json";
import { NS } from "./i18n";
import RemoteUi from "./RemoteUi";
import type { ClientData, RemoteUiProps } from "./types";

const DATA: ClientData = {
  matrix_id: "@kilo-1:example.org",
  callsign: "Kilo-1",
  homeserver: "https://synapse.example.org",
  server_name: "example.org",
  deployment: "demo",
  admin: false,
  rooms: [
    { key: "space", alias: "#demo-space:example.org", link: "https://matrix.to/#/%23demo-space%3Aexample.org", name: "demo" },
    { key: "general", alias: "#demo-general:example.org", link: "https://matrix.to/#/%23demo-general%3Aexample.org", name: "98-General" },
    { key: "helpdesk", alias: "#demo-helpdesk:example.org", link: "https://matrix.to/#/%23demo-helpdesk%3Aexample.org", name: "99-Helpdesk" },
    { key: "offtopic", alias: "#demo-offtopic:example.org", link: "https://matrix.to/#/%23demo-offtopic%3Aexample.org", name: "97-Offtopic" },
  ],
};

let host: I18n;
let missing: string[];

beforeEach(async () => {
  missing = [];
  host = i18next.createInstance();
  await host.use(initReactI18next).init({
    lng: "en",
    fallbackLng: "en",
    ns: ["host"],
    defaultNS: "host",
    resources: { en: { host: { hello: "Hello" } }, fi: { host: { hello: "Hei" } }, sv: { host: { hello: "Hej" } } },
    saveMissing: true,
    missingKeyHandler: (_lngs, ns, key) => missing.push(`${ns}:${key}`),
  });
});

afterEach(() => cleanup());

function show(props: RemoteUiProps) {
  return render(
    <I18nextProvider i18n={host}>
      <RemoteUi {...props} />
    </I18nextProvider>,
  );
}

describe("with the service's data", () => {
  it("shows the Matrix ID, the homeserver and each room as a matrix.to link", () => {
    show({ data: DATA, meta: { theme: "light", callsign: "Kilo-1" }, shortname: "matrix", onNavigate: () => {} });
    expect(screen.getByTestId("matrix-id-value").textContent).toBe("@kilo-1:example.org");
    expect(screen.getByTestId("homeserver-value").textContent).toBe("https://synapse.example.org");
    for (const r of DATA.rooms!) {
      const a = screen.getByTestId(`room-${r.key}`);
      expect(a.getAttribute("href")).toBe(r.link);
      expect(a.getAttribute("rel")).toContain("noopener");
    }
    expect(screen.getByRole("heading", { level: 1 }).textContent).toBe(en.title);
    expect(screen.getByTestId("step-homeserver").textContent).toContain("https://synapse.example.org");
    expect(screen.queryByText(en.account.homeserverDerived)).toBeNull();
    expect(missing).toEqual([]);
  });

  it("lists the admin room for administrators and drops links that are not matrix.to", () => {
    const rooms = [...DATA.rooms!, { key: "admin", alias: "#demo-admin:example.org", link: "https://matrix.to/#/%23demo-admin%3Aexample.org" },
      { key: "general", alias: "#evil:example.org", link: "javascript:alert(1)" }];
    show({ data: { ...DATA, admin: true, rooms }, meta: {}, shortname: "matrix" });
    expect(screen.getByTestId("room-admin").textContent).toBe(en.rooms.key.admin);
    expect(screen.queryByText("#evil:example.org")).toBeNull();
    expect(within(screen.getByTestId("rooms")).getAllByRole("link")).toHaveLength(5);
  });
});

describe("with data {}", () => {
  it("derives the homeserver from the page's host and the ID from meta.callsign, and still shows the onboarding", () => {
    show({ data: {}, meta: { callsign: "Alpha" }, shortname: "matrix" });
    expect(screen.getByTestId("homeserver-value").textContent).toBe("https://synapse.demo.example.test");
    expect(screen.getByText(en.account.homeserverDerived)).toBeTruthy();
    expect(screen.getByTestId("matrix-id-value").textContent).toBe("@alpha:demo.example.test");
    expect(screen.getByRole("tablist")).toBeTruthy();
    expect(screen.getByTestId("rooms-none").textContent).toBe(en.rooms.none);
    expect(missing).toEqual([]);
  });

  it("copes with no props at all", () => {
    show({});
    expect(screen.getByTestId("matrix-id-unknown").textContent).toBe(en.account.matrixIdUnknown);
    expect(screen.getByTestId("homeserver-value").textContent).toBe("https://synapse.demo.example.test");
  });
});

describe("language", () => {
  it("follows the host's language changes, in our own namespace", async () => {
    show({ data: DATA, meta: {}, shortname: "matrix" });
    const h1 = () => screen.getByRole("heading", { level: 1 }).textContent;
    expect(h1()).toBe(en.title);
    await act(async () => { await host.changeLanguage("fi"); });
    expect(h1()).toBe(fi.title);
    expect(screen.getByTestId("room-helpdesk").textContent).toBe(fi.rooms.key.helpdesk);
    expect(screen.getByTestId("matrix-page").getAttribute("lang")).toBe("fi");
    await act(async () => { await host.changeLanguage("sv"); });
    expect(h1()).toBe(sv.title);
    expect(screen.getByTestId("homeserver-copy").textContent).toBe(sv.copy.button);
    expect(host.hasResourceBundle("sv", NS)).toBe(true);
    expect(host.t("hello")).toBe("Hej"); // the host's own texts are untouched
    expect(missing).toEqual([]);
  });
});

describe("theme", () => {
  it.each([["dark", "dark"], ["light", "light"]])("meta.theme %s", (theme, want) => {
    show({ data: DATA, meta: { theme } });
    expect(screen.getByTestId("matrix-page").getAttribute("data-theme")).toBe(want);
  });
  it("anything else follows the system", () => {
    // eslint-disable-next-line @typescript-eslint/unbound-method -- kept only to be put back, never called
    const saved = window.matchMedia;
    window.matchMedia = ((q: string) => ({ matches: q === "(prefers-color-scheme: dark)" })) as never;
    try {
      show({ data: DATA, meta: { theme: "system" } });
      expect(screen.getByTestId("matrix-page").getAttribute("data-theme")).toBe("dark");
    } finally {
      window.matchMedia = saved;
    }
  });
});

describe("onboarding", () => {
  it("selects the detected platform and switches by click and by arrow keys", () => {
    vi.spyOn(window.navigator, "userAgent", "get").mockReturnValue("Mozilla/5.0 (Linux; Android 14; Pixel 8)");
    show({ data: DATA, meta: {} });
    const tab = (p: string) => screen.getByTestId(`tab-${p}`);
    expect(tab("android").getAttribute("aria-selected")).toBe("true");
    expect(tab("android").textContent).toContain(en.setup.detected);
    expect(screen.getByTestId("step-install").textContent).toContain(en.setup.install.android);
    fireEvent.click(tab("linux"));
    expect(tab("linux").getAttribute("aria-selected")).toBe("true");
    expect(screen.getByTestId("step-install").textContent).toContain(en.setup.install.linux);
    expect(screen.getByText(en.setup.certificate.desktop)).toBeTruthy();
    tab("linux").focus();
    fireEvent.keyDown(tab("linux"), { key: "ArrowRight" });
    expect(tab("android").getAttribute("aria-selected")).toBe("true");
    expect(document.activeElement).toBe(tab("android"));
    fireEvent.keyDown(tab("android"), { key: "End" });
    expect(tab("linux").getAttribute("aria-selected")).toBe("true");
    fireEvent.keyDown(tab("linux"), { key: "ArrowLeft" });
    expect(tab("windows").getAttribute("aria-selected")).toBe("true");
    expect(screen.getAllByRole("tab").filter((t) => t.tabIndex === 0)).toHaveLength(1);
  });
});

describe("copy and navigate", () => {
  it("puts the homeserver on the clipboard and says so", async () => {
    const user = userEvent.setup();
    const writeText = vi.fn().mockResolvedValue(undefined);
    Object.defineProperty(navigator, "clipboard", { value: { writeText }, configurable: true });
    show({ data: DATA, meta: {} });
    await user.click(screen.getByTestId("homeserver-copy"));
    expect(writeText).toHaveBeenCalledWith("https://synapse.example.org");
    expect(screen.getByTestId("homeserver-status").textContent).toBe(en.copy.done);
    await user.click(screen.getByTestId("matrix-id-copy"));
    expect(writeText).toHaveBeenLastCalledWith("@kilo-1:example.org");
  });

  it("says when copying failed", async () => {
    const user = userEvent.setup();
    Object.defineProperty(navigator, "clipboard", { value: { writeText: vi.fn().mockRejectedValue(new Error("denied")) }, configurable: true });
    document.execCommand = vi.fn().mockReturnValue(false);
    show({ data: DATA, meta: {} });
    await user.click(screen.getByTestId("homeserver-copy"));
    expect(screen.getByTestId("homeserver-status").textContent).toBe(en.copy.failed);
  });

  it("the back button navigates home through the host's router", async () => {
    const onNavigate = vi.fn();
    show({ data: DATA, meta: {}, onNavigate });
    await userEvent.setup().click(screen.getByRole("button", { name: en.back }));
    expect(onNavigate).toHaveBeenCalledWith({ to: "/" });
  });
});
