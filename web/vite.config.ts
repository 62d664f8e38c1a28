import { defineConfig } from 'vite';

// No React plugin: esbuild compiles TSX with the automatic runtime (no fast refresh in dev,
// one dependency less, and the same output).
export default defineConfig({
  esbuild: { jsx: 'automatic' },
  build: {
    target: 'es2022',
    sourcemap: false,
    // The player (hls.js) and the classroom load on demand: see docs/web.md, "Performance".
    chunkSizeWarningLimit: 600,
    modulePreload: { polyfill: false },
    rollupOptions: {
      onwarn(warning, warn) {
        // React Server Components' "use client" markers mean nothing in a client bundle.
        if (warning.code === 'MODULE_LEVEL_DIRECTIVE') return;
        warn(warning);
      },
    },
  },
  server: {
    proxy: {
      '/api': { target: 'http://127.0.0.1:8080', ws: true },
      '/hls': 'http://127.0.0.1:8080',
      '/whip': 'http://127.0.0.1:8080',
    },
  },
  test: { include: ['src/**/*.test.ts'] },
});
