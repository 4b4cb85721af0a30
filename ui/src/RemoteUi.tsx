// The Matrix page of the Deploy App UI: the default export of the federated
// module "./remote-ui". The host passes data (this service's clients/data
// `data`, {} on any error), meta {theme, callsign}, shortname and onNavigate;
// texts come from the host's shared i18next in our own namespace.
import { useMemo, useState } from "react";
import { useTranslation } from "react-i18next";

import { accountFor, asClientData } from "./account";
import { CopyField } from "./components/CopyField";
import { Help } from "./components/Help";
import { Logo } from "./components/Logo";
import { Onboarding } from "./components/Onboarding";
import { Rooms } from "./components/Rooms";
import { addBundles, NS } from "./i18n";
import { detectPlatform, type Platform } from "./platform";
import { CSS } from "./styles";
import { themeOf } from "./theme";
import type { RemoteUiProps } from "./types";

function Page({ data, meta, shortname, onNavigate }: RemoteUiProps) {
  const { t, i18n } = useTranslation(NS, { useSuspense: false });
  const info = asClientData(data);
  const callsign = info.callsign || meta?.callsign || undefined;
  const hostname = typeof window !== "undefined" ? window.location.hostname : "";
  const account = accountFor(info, callsign, hostname);
  const detected = useMemo(
    () => detectPlatform(typeof navigator !== "undefined" ? (navigator as never) : undefined),
    [],
  );
  const [platform, setPlatform] = useState<Platform>(detected);
  const theme = themeOf(meta?.theme);

  return (
    <div className="mxi" data-theme={theme} lang={i18n.resolvedLanguage || i18n.language}
         data-shortname={shortname || "matrix"} data-testid="matrix-page">
      <style>{CSS}</style>
      <header className="mxi-head">
        <Logo />
        <div>
          <h1>{t("title")}</h1>
        </div>
      </header>
      <p className="mxi-intro">{t("intro")}</p>

      <section className="mxi-card" aria-labelledby="mxi-account-heading">
        <h2 id="mxi-account-heading">{t("account.heading")}</h2>
        <CopyField id="homeserver" label={t("account.homeserver")} value={account.homeserver}
                   note={account.homeserverDerived ? t("account.homeserverDerived") : undefined} />
        {account.matrixId ? (
          <CopyField id="matrix-id" label={t("account.matrixId")} value={account.matrixId}
                     note={account.matrixIdDerived ? t("account.matrixIdDerived") : undefined} />
        ) : (
          <p className="mxi-note" data-testid="matrix-id-unknown">{t("account.matrixIdUnknown")}</p>
        )}
      </section>

      <Onboarding platform={platform} detected={detected} homeserver={account.homeserver}
                  onSelect={setPlatform} />
      <Rooms rooms={info.rooms} />
      <Help />
      {typeof onNavigate === "function" ? (
        <p>
          <button type="button" className="mxi-button mxi-quiet" onClick={() => onNavigate({ to: "/" })}>
            {t("back")}
          </button>
        </p>
      ) : null}
    </div>
  );
}

export default function RemoteUi(props: RemoteUiProps) {
  // The bundles go into whichever instance react-i18next hands us (the
  // host's), before the first t() of this render.
  const { i18n } = useTranslation(undefined, { useSuspense: false });
  addBundles(i18n);
  return <Page {...props} />;
}
