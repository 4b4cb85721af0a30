// Which device the reader most likely uses, for the onboarding steps.

export const PLATFORMS = ["android", "ios", "macos", "windows", "linux"] as const;
export type Platform = (typeof PLATFORMS)[number];

export interface NavigatorLike {
  userAgent?: string;
  platform?: string;
  maxTouchPoints?: number;
  userAgentData?: { platform?: string; mobile?: boolean };
}

// Client hints first (Chromium), then the user agent string. iPads that
// present themselves as a Mac are told apart by their touch screen.
export function detectPlatform(nav: NavigatorLike | undefined): Platform {
  if (!nav) return "windows";
  const hint = (nav.userAgentData?.platform ?? "").toLowerCase();
  const ua = (nav.userAgent ?? "").toLowerCase();
  const plat = (nav.platform ?? "").toLowerCase();
  if (hint === "android" || ua.includes("android")) return "android";
  if (hint === "ios" || /iphone|ipad|ipod/.test(ua)) return "ios";
  const mac = hint === "macos" || ua.includes("mac os x") || plat.startsWith("mac");
  if (mac) return (nav.maxTouchPoints ?? 0) > 1 ? "ios" : "macos";
  if (hint === "windows" || ua.includes("windows")) return "windows";
  if (hint === "linux" || hint === "chrome os" || ua.includes("linux") || ua.includes("cros")) return "linux";
  return "windows";
}

export function isMobile(p: Platform): boolean {
  return p === "android" || p === "ios";
}
