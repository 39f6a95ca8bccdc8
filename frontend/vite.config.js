// Builds the viewer into ../static/viewer/dist/, served by Django's static files (no CDN).
import { createRequire } from "node:module";
import path from "node:path";
import { defineConfig } from "vite";

const require = createRequire(import.meta.url);

// The DICOM image loader's codecs find their WASM with new URL("<package>/decodewasm", import.meta.url),
// a bare package specifier Rollup leaves alone. Rewrite it to a relative file path so the .wasm is
// emitted as an asset of the bundle, next to the worker that loads it.
function codecWasmUrls() {
  const pattern = /new URL\(\s*['"](@cornerstonejs\/codec-[a-z0-9-]+\/[a-z]+)['"]\s*,\s*import\.meta\.url\s*\)/g;
  return {
    name: "codec-wasm-urls",
    transform(code, id) {
      if (!id.includes("dicom-image-loader") || !code.includes("@cornerstonejs/codec-")) return null;
      const rewritten = code.replace(pattern, (_match, specifier) => {
        const file = require.resolve(specifier);
        const relative = path.relative(path.dirname(id), file).split(path.sep).join("/");
        return `new URL(${JSON.stringify(relative.startsWith(".") ? relative : `./${relative}`)}, import.meta.url)`;
      });
      return { code: rewritten, map: null };
    },
  };
}

export default defineConfig({
  base: "/static/viewer/dist/",
  publicDir: false,
  logLevel: "error",
  plugins: [codecWasmUrls()],
  worker: {
    format: "es",
    plugins: () => [codecWasmUrls()],
    // A fixed name, so that Django can name the decoder worker (apps/viewer/views.py decode_worker).
    rollupOptions: { output: { entryFileNames: "assets/[name].js" } },
  },
  build: {
    outDir: path.resolve(import.meta.dirname, "../static/viewer/dist"),
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    chunkSizeWarningLimit: 8000,
    assetsInlineLimit: 0,
    rollupOptions: {
      input: { viewer: path.resolve(import.meta.dirname, "src/viewer.js") },
      output: { entryFileNames: "[name].js", chunkFileNames: "chunks/[name]-[hash].js", assetFileNames: "assets/[name]-[hash][extname]" },
    },
  },
});
