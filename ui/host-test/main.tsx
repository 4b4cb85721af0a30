// A stand-in for the Deploy App UI's product page, loading the Matrix remote
// the way the real host does: the @module-federation/enhanced runtime,
// remote "matrix-integration" of type "module" at /ui/matrix/remoteEntry.js,
// loadRemote("matrix-integration/remote-ui"), react, i18next, react-i18next
// and @tanstack/react-router offered as singletons at the host's versions,
// and the four props (data, meta, shortname, onNavigate). The host never
// talks to the product itself: like Rasenmaeher in the stack, whoever serves
// this page puts the product's clients/data reply into clients-data.json
// beside it (?props=NAME reads NAME.json instead; a missing file means {}).
import { init, loadRemote, registerRemotes } from "@module-federation/enhanced/runtime";
import * as RouterNS from "@tanstack/react-router";
import * as I18nextNS from "i18next";
import i18next from "i18next";
import * as ReactNS from "react";
import * as JsxRuntimeNS from "react/jsx-runtime";
import { Component, type ComponentType, type ReactNode, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import * as ReactI18nextNS from "react-i18next";
import { initReactI18next, useTranslation } from "react-i18next";

const VERSIONS = { react: "18.3.1", i18next: "25.6.2", "react-i18next": "16.3.3", "@tanstack/react-router": "1.135.2" };
const share = (name: keyof typeof VERSIONS, lib: unknown) => ({
  version: VERSIONS[name],
  lib: () => lib,
  shareConfig: { singleton: true, requiredVersion: VERSIONS[name] },
});
// A host built with @module-federation/vite shares react's subpaths it uses
// under react's version; react/jsx-runtime is the one every React build uses.

type Props = { data: Record<string, unknown>; meta: { theme: string; callsign: string }; shortname: string;
  onNavigate: (o: { to: string }) => void };

interface HostControl {
  setLanguage: (lng: string) => Promise<void>;
  setTheme: (theme: string) => void;
  navigations: { to: string }[];
  state: "loading" | "ready" | "failed";
  error?: string;
}
declare global {
  interface Window { matrixHost: HostControl }
}

const params = new URLSearchParams(window.location.search);
const control: HostControl = { setLanguage: async () => {}, setTheme: () => {}, navigations: [], state: "loading" };
window.matrixHost = control;

class Fallback extends Component<{ children: ReactNode }, { failed: boolean }> {
  state = { failed: false };
  static getDerivedStateFromError() { return { failed: true }; }
  componentDidCatch(e: unknown) { control.state = "failed"; control.error = String(e); }
  render() { return this.state.failed ? <p role="alert">The product page failed to load.</p> : this.props.children; }
}

function Host({ Remote, data, callsign }: { Remote: ComponentType<Props>; data: Record<string, unknown>; callsign: string }) {
  const { t, i18n } = useTranslation("host");
  const [theme, setTheme] = useState(params.get("theme") || "light");
  useEffect(() => {
    control.setTheme = setTheme;
    control.setLanguage = async (lng: string) => { await i18n.changeLanguage(lng); };
    control.state = "ready";
  }, [i18n]);
  const dark = theme === "dark";
  return (
    <div style={{ minHeight: "100vh", background: dark ? "#111418" : "#ffffff", color: dark ? "#e8ebef" : "#1b1f24" }}>
      <header style={{ display: "flex", gap: "1rem", alignItems: "center", padding: "0.5rem 1rem",
        borderBottom: "1px solid #888", fontFamily: "system-ui, sans-serif" }}>
        <strong>{t("app")}</strong>
        <label>
          {t("language")}{" "}
          <select value={i18n.resolvedLanguage} onChange={(e) => { void i18n.changeLanguage(e.target.value); }} data-testid="host-language">
            <option value="en">English</option>
            <option value="fi">Suomi</option>
            <option value="sv">Svenska</option>
          </select>
        </label>
      </header>
      <main>
        <Fallback>
          <Remote data={data} meta={{ theme, callsign }} shortname="matrix"
                  onNavigate={(o) => { control.navigations.push(o); }} />
        </Fallback>
      </main>
    </div>
  );
}

async function readProps(): Promise<{ data: Record<string, unknown>; callsign: string }> {
  const name = (params.get("props") || "clients-data").replace(/[^a-z0-9-]/gi, "");
  try {
    const r = await fetch(`./${name}.json`, { cache: "no-store" });
    const body: unknown = r.ok ? await r.json() : {};
    const inner: unknown = body !== null && typeof body === "object" ? (body as { data?: unknown }).data : undefined;
    const data = inner !== null && typeof inner === "object" ? (inner as Record<string, unknown>) : {};
    return { data, callsign: params.get("callsign") || (typeof data.callsign === "string" ? data.callsign : "") };
  } catch {
    return { data: {}, callsign: params.get("callsign") || "" };
  }
}

async function main() {
  await i18next.use(initReactI18next).init({
    lng: params.get("lang") || "en",
    fallbackLng: "en",
    ns: ["host"],
    defaultNS: "host",
    resources: {
      en: { host: { app: "Deploy App", language: "Language" } },
      fi: { host: { app: "Deploy App", language: "Kieli" } },
      sv: { host: { app: "Deploy App", language: "Språk" } },
    },
    interpolation: { escapeValue: false },
  });
  init({
    name: "deployapp-test-host",
    remotes: [],
    shared: {
      react: share("react", ReactNS),
      "react/jsx-runtime": share("react", JsxRuntimeNS),
      i18next: share("i18next", I18nextNS),
      "react-i18next": share("react-i18next", ReactI18nextNS),
      "@tanstack/react-router": share("@tanstack/react-router", RouterNS),
    },
  });
  // Registered on the page, as the Deploy App does per product.
  registerRemotes([{ name: "matrix-integration", type: "module", entry: "/ui/matrix/remoteEntry.js" }]);
  const root = createRoot(document.getElementById("root")!);
  try {
    const [mod, props] = await Promise.all([
      loadRemote<{ default: ComponentType<Props> }>("matrix-integration/remote-ui"),
      readProps(),
    ]);
    if (!mod || typeof mod.default !== "function") throw new Error("remote-ui has no default export");
    root.render(<Host Remote={mod.default} data={props.data} callsign={props.callsign} />);
  } catch (e) {
    control.state = "failed";
    control.error = String(e);
    root.render(<p role="alert">The product page failed to load.</p>);
  }
}

void main();
