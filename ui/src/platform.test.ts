import { describe, expect, it } from "vitest";

import { detectPlatform, isMobile, type NavigatorLike, type Platform } from "./platform";

const cases: [string, NavigatorLike, Platform][] = [
  ["Android phone", { userAgent: "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/126 Mobile" }, "android"],
  ["iPhone", { userAgent: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15" }, "ios"],
  ["iPad as a Mac (touch)", { userAgent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Safari/605.1.15", maxTouchPoints: 5 }, "ios"],
  ["Mac", { userAgent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Safari/605.1.15", maxTouchPoints: 0 }, "macos"],
  ["Windows", { userAgent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126" }, "windows"],
  ["Linux", { userAgent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/126" }, "linux"],
  ["client hints beat the UA", { userAgent: "Mozilla/5.0 (X11; Linux x86_64)", userAgentData: { platform: "Windows" } }, "windows"],
  ["ChromeOS counts as Linux", { userAgent: "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0)" }, "linux"],
  ["unknown", { userAgent: "curl/8" }, "windows"],
];

describe("detectPlatform", () => {
  it.each(cases)("%s", (_name, nav, want) => {
    expect(detectPlatform(nav)).toBe(want);
  });
  it("without a navigator", () => {
    expect(detectPlatform(undefined)).toBe("windows");
  });
  it("mobile platforms", () => {
    expect(["android", "ios", "macos", "windows", "linux"].filter((p) => isMobile(p as Platform))).toEqual(["android", "ios"]);
  });
});
