import { useTranslation } from "react-i18next";

import { NS } from "../i18n";
import type { Room } from "../types";

const KNOWN = new Set(["space", "general", "helpdesk", "offtopic", "admin"]);

// Only links to matrix.to are shown: the page never renders a link it did not expect.
function safeLink(link: string): string | null {
  return /^https:\/\/matrix\.to\/#\//.test(link) ? link : null;
}

export function Rooms({ rooms }: { rooms: Room[] | undefined }) {
  const { t } = useTranslation(NS);
  const list = (rooms ?? []).filter((r) => r && typeof r.alias === "string" && safeLink(String(r.link)));

  return (
    <section className="mxi-card" aria-labelledby="mxi-rooms-heading">
      <h2 id="mxi-rooms-heading">{t("rooms.heading")}</h2>
      {list.length === 0 ? (
        <p data-testid="rooms-none">{t("rooms.none")}</p>
      ) : (
        <>
          <p>{t("rooms.intro")}</p>
          <ul className="mxi-rooms" data-testid="rooms">
            {list.map((r) => {
              const title = KNOWN.has(r.key) ? t(`rooms.key.${r.key}`) : r.name || r.alias;
              return (
                <li key={r.alias}>
                  <a href={safeLink(r.link) ?? undefined} target="_blank" rel="noopener noreferrer"
                     aria-label={t("rooms.open", { room: title, interpolation: { escapeValue: false } })} data-testid={`room-${r.key}`}>
                    {title}
                  </a>
                  <span className="mxi-alias">{r.alias}</span>
                </li>
              );
            })}
          </ul>
        </>
      )}
    </section>
  );
}
