// The test host page (not shipped): built into ui/build-host/ and served by
// the service under /ui/matrix/host-test/ beside the remote (see
// tests/ui-browser.mjs and deploy/run-local.sh).
import react from "@vitejs/plugin-react";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "./",
  plugins: [react()],
  build: {
    outDir: fileURLToPath(new URL("../build-host", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    assetsInlineLimit: 0,
  },
});
