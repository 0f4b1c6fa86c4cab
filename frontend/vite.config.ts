/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

const API = process.env.CONTIMG_API_URL ?? 'http://127.0.0.1:8010';

// The dashboard lives under /streaming: contimg-api serves frontend/dist there
// (with SPA fallback), so every asset URL is /streaming/assets/….
export default defineConfig({
  base: '/streaming/',
  plugins: [react()],
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
