// meta.theme from the host: "dark" and "light" as it says; anything else
// (absent, "system", a name we do not know) follows the system setting.
export function themeOf(theme: string | undefined): "dark" | "light" {
  if (theme === "dark" || theme === "light") return theme;
  const dark =
    typeof window !== "undefined" &&
    typeof window.matchMedia === "function" &&
    window.matchMedia("(prefers-color-scheme: dark)")?.matches === true;
  return dark ? "dark" : "light";
}
