// The Matrix page as a module-federation remote, as the Deploy App UI loads
// it: remote "matrix-integration", module "./remote-ui", entry
// /ui/matrix/remoteEntry.js. React, i18next, react-i18next and the router are
// the host's singletons at the host's versions (package.json pins the same
// ones, so the local fallbacks match if a host lacks one).
import { federation } from "@module-federation/vite";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

import pkg from "./package.json" with { type: "json" };

const singleton = (name: keyof typeof pkg.dependencies) => ({
  singleton: true,
  requiredVersion: pkg.dependencies[name],
});

export default defineConfig({
  base: "/ui/matrix/",
  plugins: [
    react(),
    federation({
      name: "matrix-integration",
      filename: "remoteEntry.js",
      exposes: { "./remote-ui": "./src/RemoteUi.tsx" },
      shared: {
        react: singleton("react"),
        i18next: singleton("i18next"),
        "react-i18next": singleton("react-i18next"),
        "@tanstack/react-router": singleton("@tanstack/react-router"),
      },
      dts: false,
      manifest: false,
    }),
  ],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // The remote has no page of its own: remoteEntry.js is the entry.
    rollupOptions: { input: {} },
    assetsInlineLimit: 0,
  },
});
