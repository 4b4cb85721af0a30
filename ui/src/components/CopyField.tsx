import { useEffect, useRef, useState } from "react";
import { useTranslation } from "react-i18next";

import { NS } from "../i18n";

// Writes text to the clipboard: the asynchronous Clipboard API where the
// page may use it, else a hidden text area and the copy command.
export async function copyText(text: string, doc: Document = document): Promise<boolean> {
  try {
    if (navigator.clipboard && typeof navigator.clipboard.writeText === "function") {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall through to the older way
  }
  const area = doc.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  doc.body.appendChild(area);
  area.select();
  let ok = false;
  try {
    ok = doc.execCommand("copy");
  } catch {
    ok = false;
  }
  doc.body.removeChild(area);
  return ok;
}

interface Props {
  id: string;
  label: string;
  value: string;
  note?: string;
}

// A labelled value with a copy button; the outcome is announced politely.
export function CopyField({ id, label, value, note }: Props) {
  const { t } = useTranslation(NS);
  const [status, setStatus] = useState<"" | "done" | "failed">("");
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);

  useEffect(() => () => clearTimeout(timer.current), []);

  const onCopy = async () => {
    const ok = await copyText(value);
    setStatus(ok ? "done" : "failed");
    clearTimeout(timer.current);
    timer.current = setTimeout(() => setStatus(""), 4000);
  };

  return (
    <div className="mxi-field">
      <span className="mxi-label" id={`${id}-label`}>
        {label}
      </span>
      <div className="mxi-value">
        <code id={`${id}-value`} data-testid={`${id}-value`} aria-labelledby={`${id}-label`}>
          {value}
        </code>
        <button
          type="button"
          className="mxi-button"
          onClick={() => { void onCopy(); }}
          aria-label={t("copy.label", { what: label, interpolation: { escapeValue: false } })}
          data-testid={`${id}-copy`}
        >
          {t("copy.button")}
        </button>
        <span className="mxi-status" role="status" aria-live="polite" data-testid={`${id}-status`}>
          {status ? t(`copy.${status}`) : ""}
        </span>
      </div>
      {note ? <p className="mxi-note">{note}</p> : null}
    </div>
  );
}
