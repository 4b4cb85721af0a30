// The page's styles, rendered as one <style> element inside the page so that
// they travel with the federated module (no separate CSS file for the host to
// load). Every selector is under .mxi, so nothing leaks into the host.
export const CSS = `
.mxi {
  --mxi-bg: #ffffff; --mxi-card: #f5f7f9; --mxi-text: #1b1f24; --mxi-muted: #4a5563;
  --mxi-accent: #05704f; --mxi-accent-text: #ffffff; --mxi-border: #c9d1d9; --mxi-focus: #0b57d0;
  color: var(--mxi-text); background: var(--mxi-bg);
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  line-height: 1.5; max-width: 56rem; margin: 0 auto; padding: 1rem; box-sizing: border-box;
}
.mxi[data-theme="dark"] {
  --mxi-bg: #111418; --mxi-card: #1c2128; --mxi-text: #e8ebef; --mxi-muted: #aab4c0;
  --mxi-accent: #3ddc9f; --mxi-accent-text: #06281c; --mxi-border: #3a434e; --mxi-focus: #8ab4f8;
}
.mxi *, .mxi *::before, .mxi *::after { box-sizing: inherit; }
.mxi h1 { font-size: 1.6rem; margin: 0; }
.mxi h2 { font-size: 1.2rem; margin: 0 0 0.5rem; }
.mxi p { margin: 0.25rem 0 0.5rem; }
.mxi a { color: var(--mxi-accent); text-underline-offset: 2px; }
.mxi :focus-visible { outline: 3px solid var(--mxi-focus); outline-offset: 2px; }
.mxi-head { display: flex; gap: 1rem; align-items: center; margin-bottom: 0.5rem; }
.mxi-head svg { width: 3rem; height: 3rem; flex: none; }
.mxi-intro { color: var(--mxi-muted); }
.mxi-card { background: var(--mxi-card); border: 1px solid var(--mxi-border); border-radius: 0.75rem;
  padding: 1rem; margin: 1rem 0; }
.mxi-field { margin: 0.5rem 0 0.75rem; }
.mxi-label { font-weight: 600; display: block; }
.mxi-value { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: center; }
.mxi-value code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 1rem;
  background: var(--mxi-bg); border: 1px solid var(--mxi-border); border-radius: 0.4rem;
  padding: 0.3rem 0.5rem; overflow-wrap: anywhere; }
.mxi-note { color: var(--mxi-muted); font-size: 0.9rem; margin: 0.25rem 0 0; }
.mxi-button { font: inherit; cursor: pointer; border-radius: 0.5rem; padding: 0.35rem 0.9rem;
  border: 1px solid var(--mxi-accent); background: var(--mxi-accent); color: var(--mxi-accent-text);
  min-height: 2.25rem; }
.mxi-button.mxi-quiet { background: transparent; color: var(--mxi-accent); }
.mxi-status { font-size: 0.9rem; color: var(--mxi-muted); }
.mxi-tabs { display: flex; flex-wrap: wrap; gap: 0.4rem; margin: 0.5rem 0 0.75rem; }
.mxi-tab { font: inherit; cursor: pointer; border-radius: 999px; padding: 0.3rem 0.9rem;
  border: 1px solid var(--mxi-border); background: var(--mxi-bg); color: var(--mxi-text); min-height: 2.25rem; }
.mxi-tab[aria-selected="true"] { background: var(--mxi-accent); color: var(--mxi-accent-text);
  border-color: var(--mxi-accent); font-weight: 600; }
.mxi-detected { font-size: 0.8rem; font-weight: 400; margin-left: 0.35rem; }
.mxi-steps { margin: 0; padding-left: 1.5rem; }
.mxi-steps li { margin: 0.35rem 0; }
.mxi-links { display: flex; flex-wrap: wrap; gap: 0.75rem; margin-top: 0.25rem; }
.mxi-rooms { list-style: none; margin: 0; padding: 0; display: grid; gap: 0.5rem;
  grid-template-columns: repeat(auto-fill, minmax(15rem, 1fr)); }
.mxi-rooms li { background: var(--mxi-bg); border: 1px solid var(--mxi-border); border-radius: 0.5rem;
  padding: 0.5rem 0.75rem; }
.mxi-rooms a { font-weight: 600; }
.mxi-alias { display: block; font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.85rem;
  color: var(--mxi-muted); overflow-wrap: anywhere; }
.mxi details { border-top: 1px solid var(--mxi-border); padding: 0.5rem 0; }
.mxi details:first-of-type { border-top: 0; }
.mxi summary { cursor: pointer; font-weight: 600; }
@media (max-width: 30rem) {
  .mxi { padding: 0.5rem; }
  .mxi h1 { font-size: 1.3rem; }
  .mxi-card { padding: 0.75rem; }
  .mxi-head svg { width: 2.25rem; height: 2.25rem; }
}
`;
