import { describe, expect, it } from "vitest";

import { RESOURCES } from "./i18n";

function keys(o: Record<string, unknown>, prefix = ""): string[] {
  return Object.entries(o).flatMap(([k, v]) =>
    v !== null && typeof v === "object" ? keys(v as Record<string, unknown>, `${prefix}${k}.`) : [`${prefix}${k}`]);
}

describe("texts", () => {
  const en = keys(RESOURCES.en).sort();
  it.each(["fi", "sv"] as const)("%s has exactly the English keys, none empty", (lng) => {
    expect(keys(RESOURCES[lng]).sort()).toEqual(en);
    for (const k of en) {
      const v = k.split(".").reduce<unknown>((o, p) => (o as Record<string, unknown>)[p], RESOURCES[lng]);
      expect(typeof v === "string" && v.trim().length > 0, `${lng}: ${k}`).toBe(true);
    }
  });
  it("fi and sv are translations, not copies", () => {
    expect(RESOURCES.fi.title).not.toBe(RESOURCES.en.title);
    expect(RESOURCES.sv.title).not.toBe(RESOURCES.en.title);
    expect(RESOURCES.fi.intro).not.toBe(RESOURCES.sv.intro);
  });
});
