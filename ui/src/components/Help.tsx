import { useTranslation } from "react-i18next";

import { NS } from "../i18n";

const TOPICS = ["loop", "homeserver", "certificate"] as const;

// Native <details> elements: keyboard-usable and announced without extra code.
export function Help() {
  const { t } = useTranslation(NS);
  return (
    <section className="mxi-card" aria-labelledby="mxi-help-heading">
      <h2 id="mxi-help-heading">{t("help.heading")}</h2>
      {TOPICS.map((k) => (
        <details key={k} data-testid={`help-${k}`}>
          <summary>{t(`help.${k}.question`)}</summary>
          <p>{t(`help.${k}.answer`)}</p>
        </details>
      ))}
    </section>
  );
}
