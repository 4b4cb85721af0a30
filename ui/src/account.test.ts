import { describe, expect, it } from "vitest";

import { accountFor, asClientData, domainFromHost } from "./account";

describe("domainFromHost", () => {
  it.each([
    ["mtls.demo.example.org", "demo.example.org"],
    ["demo.example.org", "demo.example.org"],
    ["MTLS.Demo.Example.org.", "demo.example.org"],
    ["localhost", "localhost"],
  ])("%s -> %s", (host, want) => expect(domainFromHost(host)).toBe(want));
});

describe("accountFor", () => {
  it("takes everything from the service's data", () => {
    const a = accountFor({ matrix_id: "@kilo-1:example.org", homeserver: "https://hs.example.org",
      server_name: "example.org" }, "Other", "mtls.else.where");
    expect(a).toEqual({ homeserver: "https://hs.example.org", homeserverDerived: false,
      matrixId: "@kilo-1:example.org", matrixIdDerived: false });
  });
  it("with {} derives the homeserver from the page and the ID from the callsign", () => {
    expect(accountFor({}, "Kilo-1", "mtls.demo.example.org")).toEqual({
      homeserver: "https://synapse.demo.example.org", homeserverDerived: true,
      matrixId: "@kilo-1:demo.example.org", matrixIdDerived: true });
  });
  it("shows no ID for a callsign that cannot be one, or none", () => {
    expect(accountFor({}, "no spaces", "demo.example.org").matrixId).toBeNull();
    expect(accountFor({}, undefined, "demo.example.org").matrixId).toBeNull();
  });
  it("uses server_name when only the homeserver is missing", () => {
    expect(accountFor({ server_name: "example.org" }, undefined, "x.y").homeserver).toBe("https://synapse.example.org");
  });
});

describe("asClientData", () => {
  it.each([[null], [undefined], ["text"], [[1, 2]], [42]])("%s is {}", (v) => expect(asClientData(v)).toEqual({}));
  it("keeps an object", () => expect(asClientData({ matrix_id: "@a:b" })).toEqual({ matrix_id: "@a:b" }));
});
