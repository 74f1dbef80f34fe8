/// <reference types="vitest/config" />
import { defineConfig } from "vite";

// Built into the Python package so a wheel user needs no Node.js. No plugin: esbuild
// compiles TSX itself, and content-hashed names keep the build deterministic.
export default defineConfig({
  base: "/",
  esbuild: { jsx: "automatic" },
  build: {
    outDir: "../p2pnode/web/static",
    emptyOutDir: true,
    sourcemap: false,
    reportCompressedSize: false,
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.tsx", "src/**/*.test.ts"],
  },
});
