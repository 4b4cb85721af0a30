// The Matrix page in a real browser: Debian's chromium (headless, driven by
// playwright-core; no browser is downloaded) opens the test host page
// (ui/host-test/), which loads the remote exactly as the Deploy App UI does.
// Both are served by the real matrixrmapi binary with UI_DIR, in native
// mutual-TLS mode with a PKI made by deploy/mkpki.sh. The data is the real
// api/v2/clients/data reply for a user first created through a real
// /api/v1/users/created callback, put beside the host page as Rasenmaeher
// would hand it to the UI. The browser reaches the service as
// mtls.demo.example.test (mapped to 127.0.0.1), trusting only the test
// server's key. Checks: Matrix ID, homeserver and room links from that
// reply; fi and sv through the host's language switch; data {}; copy to the
// clipboard; keyboard; phone width; no console error, no failed request.
// Screenshots of each state go to LOG_DIR.
//   env: MATRIXRMAPI_BIN (the binary), LOG_DIR (default ../../build-test/meson-logs/ui-browser)
import { execFileSync, spawn } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const UI = path.resolve(fileURLToPath(new URL("..", import.meta.url)));
const SRC = path.resolve(UI, "..");
const BIN = process.env.MATRIXRMAPI_BIN || path.join(SRC, "build-test", "matrixrmapi");
const LOG_DIR = process.env.LOG_DIR || path.join(SRC, "build-test", "meson-logs", "ui-browser");
const HOST = "mtls.demo.example.test";
const DOMAIN = "example.org";
const CALLSIGN = "Kilo-1";
const TEXTS = Object.fromEntries(["en", "fi", "sv"].map((l) =>
  [l, JSON.parse(readFileSync(path.join(UI, "src", "locales", `${l}.json`), "utf8"))]));

const results = [];
let failures = 0;
function check(name, ok, detail = "") {
  results.push({ name, ok });
  if (!ok) failures++;
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${ok || !detail ? "" : `: ${detail}`}`);
}
function eq(name, have, want) {
  check(name, JSON.stringify(have) === JSON.stringify(want), `have ${JSON.stringify(have)}, want ${JSON.stringify(want)}`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

function call(port, pki, method, urlPath, body, cert) {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: "127.0.0.1", port, method, path: urlPath, servername: "localhost",
      ca: readFileSync(path.join(pki, "ca.pem")),
      ...(cert ? { cert: readFileSync(path.join(pki, `${cert}.pem`)), key: readFileSync(path.join(pki, `${cert}.key`)) } : {}),
      headers: payload ? { "Content-Type": "application/json", "Content-Length": payload.length } : {},
      timeout: 10000,
    }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.end(payload);
  });
}

async function waitHealthy(port, pki, proc) {
  for (let i = 0; i < 150; i++) {
    if (proc.exitCode !== null) throw new Error(`matrixrmapi exited with ${proc.exitCode}`);
    try {
      const r = await call(port, pki, "GET", "/api/v1/healthcheck");
      if (r.status === 200) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("matrixrmapi not ready after 15 s");
}

// Runs in the page: every element of the Matrix page that has text of its
// own, whose colour against its effective background is below 4.5:1 (WCAG AA).
function contrastProblems() {
  const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const out = [];
  for (const el of document.querySelectorAll('[data-testid="matrix-page"] *')) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || el.closest("style") || el.getClientRects().length === 0) continue;
    const a = lum(rgb(getComputedStyle(el).color).slice(0, 3)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) out.push(`${el.tagName.toLowerCase()}.${el.className} "${el.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}`);
  }
  return out;
}

function spkiHash(certFile) {
  const pub = execFileSync("openssl", ["x509", "-in", certFile, "-noout", "-pubkey"]);
  const der = execFileSync("openssl", ["pkey", "-pubin", "-outform", "der"], { input: pub });
  return execFileSync("openssl", ["dgst", "-sha256", "-binary"], { input: der }).toString("base64");
}

async function main() {
  const tmp = mkdtempSync(path.join(os.tmpdir(), "matrixrmapi-ui-"));
  const pki = path.join(tmp, "pki");
  const www = path.join(tmp, "www");
  mkdirSync(LOG_DIR, { recursive: true });
  execFileSync("bash", [path.join(SRC, "deploy", "mkpki.sh"), pki], { stdio: ["ignore", "ignore", "inherit"] });
  // UI_DIR: the shipped build as it is, with the test host page beside it.
  cpSync(path.join(UI, "dist"), www, { recursive: true });
  cpSync(path.join(UI, "build-host"), path.join(www, "host-test"), { recursive: true });
  const manifest = path.join(tmp, "manifest.json");
  writeFileSync(manifest, JSON.stringify({ deployment: "demo",
    rasenmaeher: { certcn: "rasenmaeher", init: { base_uri: "https://rm.example.org/" } },
    product: { dns: `matrix.${DOMAIN}`, uri: `https://matrix.${DOMAIN}/` } }));
  const port = await freePort();
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) =>
    !/^(TLS_|MTLS_|SYNAPSE_|LISTEN_|SERVER_DOMAIN|UI_DIR)/.test(k)));
  Object.assign(env, {
    KRAFTWERK_MANIFEST: manifest, DATABASE_PATH: path.join(tmp, "db.sqlite"),
    LISTEN_ADDRESS: "127.0.0.1", LISTEN_PORT: String(port), METRICS_PORT: "0",
    SYNAPSE_REGISTRATION_SECRET: "x", SYNAPSE_URL: "http://127.0.0.1:9", SYNAPSE_TOKEN_FILE: path.join(tmp, "token"),
    TLS_CERT_FILE: path.join(pki, "server.pem"), TLS_KEY_FILE: path.join(pki, "server.key"),
    TLS_CLIENT_CA_FILE: path.join(pki, "ca.pem"), UI_DIR: www, LOG_LEVEL: "info",
  });
  const logFile = path.join(LOG_DIR, "matrixrmapi.log");
  const log = [];
  const proc = spawn(BIN, ["serve"], { env, stdio: ["ignore", "pipe", "pipe"] });
  proc.stdout.on("data", (d) => log.push(d));
  proc.stderr.on("data", (d) => log.push(d));
  let browser;
  try {
    await waitHealthy(port, pki, proc);

    // A user created through the callback, then the reply the UI gets as data.
    const userPem = readFileSync(path.join(pki, "user.pem"), "utf8");
    const created = await call(port, pki, "POST", "/api/v1/users/created",
      { uuid: "5d2d3c1e-0000-4000-8000-00000000b001", callsign: CALLSIGN, x509cert: userPem.replace(/\n/g, "\\n") }, "rasenmaeher");
    eq("callback /api/v1/users/created succeeds", [created.status, JSON.parse(created.body).success], [200, true]);
    const reply = await call(port, pki, "POST", "/api/v2/clients/data",
      { uuid: "5d2d3c1e-0000-4000-8000-00000000b001", callsign: CALLSIGN, x509cert: userPem }, "user");
    eq("clients/data answers 200 application/json", [reply.status, reply.headers["content-type"]], [200, "application/json"]);
    const body = JSON.parse(reply.body);
    eq("clients/data reply is exactly {data}", Object.keys(body), ["data"]);
    const data = body.data;
    eq("the Matrix ID is the callsign's", data.matrix_id, `@kilo-1:${DOMAIN}`);
    writeFileSync(path.join(www, "host-test", "clients-data.json"), reply.body);
    writeFileSync(path.join(www, "host-test", "empty.json"), "{}"); // what the UI passes on any error
    const logo = await call(port, pki, "GET", "/ui/matrix/matrixlogo.svg");
    eq("matrixlogo.svg is served as SVG", [logo.status, logo.headers["content-type"], logo.body.startsWith("<svg")], [200, "image/svg+xml", true]);

    const profile = path.join(tmp, "profile");
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        `--host-resolver-rules=MAP ${HOST} 127.0.0.1`,
        `--ignore-certificate-errors-spki-list=${spkiHash(path.join(pki, "server.pem"))}`],
      viewport: { width: 1100, height: 900 },
      locale: "en-US",
    });
    browser = context;
    const origin = `https://${HOST}:${port}`;
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin });
    const page = context.pages()[0] || await context.newPage();
    const problems = [];
    page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
    page.on("response", (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
    const loaded = [];
    page.on("response", (r) => loaded.push(new URL(r.url()).pathname));
    const shot = async (name, fullPage = true) => page.screenshot({ path: path.join(LOG_DIR, `${name}.png`), fullPage });
    const text = (id) => page.getByTestId(id).textContent();
    const h1 = () => page.locator("h1").textContent();

    // 1. English, with the service's data.
    await page.goto(`${origin}/ui/matrix/host-test/?lang=en`);
    await page.getByTestId("matrix-page").waitFor({ timeout: 20000 });
    eq("host state is ready", await page.evaluate(() => window.matrixHost.state), "ready");
    check("the remote came from /ui/matrix/remoteEntry.js", loaded.includes("/ui/matrix/remoteEntry.js"));
    // The host's singletons were used: none of the remote's own fallback
    // copies of react, i18next, react-i18next or the router was fetched.
    eq("no fallback copy of a shared library was loaded",
      loaded.filter((p) => p.startsWith("/ui/matrix/assets/") && /prebuild__/.test(p)), []);
    writeFileSync(path.join(LOG_DIR, "loaded.txt"), loaded.join("\n") + "\n");
    eq("Matrix ID shown from the reply", await text("matrix-id-value"), data.matrix_id);
    eq("homeserver shown from the reply", await text("homeserver-value"), data.homeserver);
    const links = await page.getByTestId("rooms").locator("a").evaluateAll((as) => as.map((a) => a.getAttribute("href")));
    eq("room links are the reply's matrix.to links", links, data.rooms.map((r) => r.link));
    eq("English title", await h1(), TEXTS.en.title);
    await shot("1-en");

    // 2. The host's language switch: fi, then sv.
    await page.getByTestId("host-language").selectOption("fi");
    await page.waitForFunction((t) => document.querySelector("h1")?.textContent === t, TEXTS.fi.title, { timeout: 5000 }).catch(() => {});
    eq("Finnish title after the host switched to fi", await h1(), TEXTS.fi.title);
    eq("Finnish copy button", await text("homeserver-copy"), TEXTS.fi.copy.button);
    eq("Finnish room name", await text("room-helpdesk"), TEXTS.fi.rooms.key.helpdesk);
    await shot("2-fi");
    await page.getByTestId("host-language").selectOption("sv");
    await page.waitForFunction((t) => document.querySelector("h1")?.textContent === t, TEXTS.sv.title, { timeout: 5000 }).catch(() => {});
    eq("Swedish title after the host switched to sv", await h1(), TEXTS.sv.title);
    eq("Swedish help heading", await page.locator("#mxi-help-heading").textContent(), TEXTS.sv.help.heading);
    await shot("3-sv");
    await page.getByTestId("host-language").selectOption("en");

    // 3. Copy: the address lands on the clipboard, by mouse and by keyboard
    // (Tab from the top of the page to the Matrix ID's button, then Enter).
    await page.evaluate(() => navigator.clipboard.writeText("nothing yet"));
    await page.getByTestId("homeserver-copy").click();
    await page.getByTestId("homeserver-status").filter({ hasText: TEXTS.en.copy.done }).waitFor({ timeout: 5000 });
    eq("the copy button put the homeserver on the clipboard", await page.evaluate(() => navigator.clipboard.readText()), data.homeserver);
    await page.evaluate(() => { document.activeElement?.blur(); window.scrollTo(0, 0); });
    let tabs = 0;
    while (tabs < 15 && await page.evaluate(() => document.activeElement?.getAttribute("data-testid")) !== "matrix-id-copy") {
      await page.keyboard.press("Tab");
      tabs++;
    }
    check("the Matrix ID's copy button is reachable with Tab", tabs < 15, `not focused after ${tabs} presses`);
    await page.keyboard.press("Enter");
    await page.getByTestId("matrix-id-status").filter({ hasText: TEXTS.en.copy.done }).waitFor({ timeout: 5000 });
    eq("Enter on it put the Matrix ID on the clipboard", await page.evaluate(() => navigator.clipboard.readText()), data.matrix_id);
    const lowContrast = () => page.evaluate(contrastProblems);
    eq("text contrast at least 4.5:1 (light)", await lowContrast(), []);

    // 4. Keyboard: tab to the platform list, arrows move the selection.
    const selected = () => page.locator('[role="tab"][aria-selected="true"]').getAttribute("id");
    eq("Linux detected for this browser", await selected(), "mxi-tab-linux");
    await page.locator('[role="tab"][aria-selected="true"]').focus();
    await page.keyboard.press("ArrowRight");
    eq("ArrowRight moves to the next platform", await selected(), "mxi-tab-android");
    eq("focus follows the selection", await page.evaluate(() => document.activeElement?.id), "mxi-tab-android");
    eq("Android steps shown", (await text("step-install")).startsWith(TEXTS.en.setup.install.android), true);
    await shot("4-android-selected");
    await page.keyboard.press("End");
    eq("End selects the last platform", await selected(), "mxi-tab-linux");

    // 5. Dark theme from meta.theme, and a phone-sized window.
    await page.evaluate(() => window.matrixHost.setTheme("dark"));
    // setTheme is a state change from outside a React event: it renders after evaluate returns
    await page.waitForFunction(() => document.querySelector('[data-testid="matrix-page"]')?.getAttribute("data-theme") === "dark",
      null, { timeout: 5000 }).catch(() => {});
    eq("meta.theme dark reaches the page", await page.getByTestId("matrix-page").getAttribute("data-theme"), "dark");
    eq("text contrast at least 4.5:1 (dark)", await lowContrast(), []);
    await shot("5-dark");
    await page.setViewportSize({ width: 360, height: 780 });
    eq("no sideways scrolling at phone width", await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), true);
    await shot("6-phone-dark");
    await page.evaluate(() => window.matrixHost.setTheme("light"));
    await page.setViewportSize({ width: 820, height: 760 });
    await page.screenshot({ path: path.join(LOG_DIR, "readme.png"), fullPage: false });

    // 6. data {} (what the UI passes when clients/data fails): still a page.
    await page.goto(`${origin}/ui/matrix/host-test/?props=empty&callsign=${CALLSIGN}&lang=en`);
    await page.getByTestId("matrix-page").waitFor({ timeout: 20000 });
    eq("with {} the homeserver comes from the page's host name", await text("homeserver-value"), "https://synapse.demo.example.test");
    eq("with {} the Matrix ID comes from meta.callsign", await text("matrix-id-value"), "@kilo-1:demo.example.test");
    eq("with {} the rooms say they are not available", await text("rooms-none"), TEXTS.en.rooms.none);
    eq("with {} the onboarding is there", await page.locator('[role="tab"]').count(), 5);
    await shot("7-empty-data");

    eq("no console error, no failed request", problems, []);
  } finally {
    if (browser) await browser.close().catch(() => {});
    proc.kill("SIGTERM");
    await new Promise((r) => (proc.exitCode !== null ? r() : proc.once("exit", r)));
    writeFileSync(logFile, Buffer.concat(log));
    check("matrixrmapi stopped cleanly", proc.exitCode === 0, `exit ${proc.exitCode}`);
    check("the log holds no certificate", !Buffer.concat(log).toString().includes("BEGIN CERTIFICATE"));
    if (failures === 0) rmSync(tmp, { recursive: true, force: true });
    else console.log(`kept ${tmp} for inspection`);
  }
}

main().catch((e) => { check("browser test ran to the end", false, e && e.stack ? e.stack : String(e)); })
  .finally(() => {
    console.log(`screenshots and the service log: ${LOG_DIR}`);
    console.log(`${results.filter((r) => r.ok).length} passed, ${failures} failed`);
    process.exitCode = failures ? 1 : 0;
  });
