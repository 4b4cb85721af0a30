// The page's texts live in their own namespace of the host's shared i18next
// instance, so the host's language switch changes them too.
import type { i18n as I18n } from "i18next";

import en from "./locales/en.json";
import fi from "./locales/fi.json";
import sv from "./locales/sv.json";

export const NS = "matrix-integration";
export const RESOURCES = { en, fi, sv } as const;
export const LANGUAGES = Object.keys(RESOURCES) as (keyof typeof RESOURCES)[];

// Adds our bundles to the instance the host gave (once; never overwriting a
// bundle the host may have put there on purpose).
export function addBundles(i18n: I18n | undefined): void {
  if (!i18n || typeof i18n.addResourceBundle !== "function" || !i18n.store) return;
  for (const lng of LANGUAGES) {
    if (!i18n.hasResourceBundle(lng, NS)) i18n.addResourceBundle(lng, NS, RESOURCES[lng], true, false);
  }
}
