import { useRef, type KeyboardEvent } from "react";
import { useTranslation } from "react-i18next";

import { NS } from "../i18n";
import { isMobile, PLATFORMS, type Platform } from "../platform";

const STORE_LINKS: Record<Platform, { key: string; href: string }[]> = {
  android: [
    { key: "android", href: "https://play.google.com/store/apps/details?id=im.vector.app" },
    { key: "fdroid", href: "https://f-droid.org/packages/im.vector.app/" },
  ],
  ios: [{ key: "ios", href: "https://apps.apple.com/app/element-messenger/id1083446067" }],
  macos: [{ key: "desktop", href: "https://element.io/download" }],
  windows: [{ key: "desktop", href: "https://element.io/download" }],
  linux: [{ key: "desktop", href: "https://element.io/download" }],
};

interface Props {
  platform: Platform;
  detected: Platform;
  homeserver: string;
  onSelect: (p: Platform) => void;
}

// The platform picker is a tab list: arrow keys, Home and End move between
// platforms; the steps below are the selected tab's panel.
export function Onboarding({ platform, detected, homeserver, onSelect }: Props) {
  const { t } = useTranslation(NS);
  const tabs = useRef<(HTMLButtonElement | null)[]>([]);

  const onKey = (e: KeyboardEvent<HTMLButtonElement>, index: number) => {
    const last = PLATFORMS.length - 1;
    const next =
      e.key === "ArrowRight" || e.key === "ArrowDown" ? (index === last ? 0 : index + 1)
      : e.key === "ArrowLeft" || e.key === "ArrowUp" ? (index === 0 ? last : index - 1)
      : e.key === "Home" ? 0
      : e.key === "End" ? last
      : -1;
    if (next < 0) return;
    e.preventDefault();
    onSelect(PLATFORMS[next]);
    tabs.current[next]?.focus();
  };

  return (
    <section className="mxi-card" aria-labelledby="mxi-setup-heading">
      <h2 id="mxi-setup-heading">{t("setup.heading")}</h2>
      <div className="mxi-tabs" role="tablist" aria-label={t("setup.device")}>
        {PLATFORMS.map((p, i) => (
          <button
            key={p}
            ref={(el) => {
              tabs.current[i] = el;
            }}
            type="button"
            role="tab"
            id={`mxi-tab-${p}`}
            aria-selected={p === platform}
            aria-controls="mxi-steps"
            tabIndex={p === platform ? 0 : -1}
            className="mxi-tab"
            data-testid={`tab-${p}`}
            onClick={() => onSelect(p)}
            onKeyDown={(e) => onKey(e, i)}
          >
            {t(`platform.${p}`)}
            {p === detected ? <span className="mxi-detected">({t("setup.detected")})</span> : null}
          </button>
        ))}
      </div>
      <div role="tabpanel" id="mxi-steps" aria-labelledby={`mxi-tab-${platform}`} tabIndex={0}>
        <ol className="mxi-steps" aria-label={t("setup.stepsFor", { platform: t(`platform.${platform}`), interpolation: { escapeValue: false } })}>
          <li data-testid="step-install">
            {t(`setup.install.${platform}`)}
            <span className="mxi-links">
              {STORE_LINKS[platform].map((l) => (
                <a key={l.key} href={l.href} target="_blank" rel="noopener noreferrer">
                  {t(`setup.links.${l.key}`)}
                </a>
              ))}
            </span>
          </li>
          <li data-testid="step-homeserver">
            {t("setup.homeserver", { homeserver, interpolation: { escapeValue: false } })}
          </li>
          <li>{t("setup.keycloak")}</li>
          <li>{t(isMobile(platform) ? "setup.certificate.mobile" : "setup.certificate.desktop")}</li>
          <li>{t("setup.done")}</li>
        </ol>
      </div>
    </section>
  );
}
