/// <reference types="vitest/config" />
import { defineConfig, type Connect, type Plugin } from 'vite';
import react from '@vitejs/plugin-react';

const API = process.env.CONTIMG_API_URL ?? 'http://127.0.0.1:8010';

// Vite only serves below `base`: send `/` and `/streaming` to `/streaming/` in
// dev and preview, like contimg-api does in production.
const redirect: Connect.NextHandleFunction = (req, res, next) => {
  const path = req.url?.split('?')[0];
  if (path === '/' || path === '/streaming') {
    res.statusCode = 302;
    res.setHeader('Location', '/streaming/');
    res.end();
    return;
  }
  next();
};
const baseRedirect: Plugin = {
  name: 'contimg-base-redirect',
  configureServer: (server) => void server.middlewares.use(redirect),
  configurePreviewServer: (server) => void server.middlewares.use(redirect),
};

// The dashboard lives under /streaming: contimg-api serves frontend/dist there
// (with SPA fallback), so every asset URL is /streaming/assets/….
export default defineConfig({
  base: '/streaming/',
  plugins: [react(), baseRedirect],
  server: {
    port: 5173,
    strictPort: true,
    proxy: {
      '/api': { target: API, changeOrigin: false },
      '/metrics': { target: API, changeOrigin: false },
    },
  },
  build: {
    outDir: 'dist',
    chunkSizeWarningLimit: 900,
  },
  test: {
    environment: 'jsdom',
    include: ['src/**/*.test.{ts,tsx}'],
    setupFiles: ['src/test/setup.ts'],
    css: false,
  },
});
