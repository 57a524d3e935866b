// Builds the chat page into dist/, which livehub-chat serves as its web root
// (--livehub.web-root=examples/chat/web/dist).
//
// `npx vite` serves the page with hot reload and forwards /ws and /api to a
// livehub-chat on 127.0.0.1:8080 (override with LIVEHUB_URL).
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

const target = process.env.LIVEHUB_URL || 'http://127.0.0.1:8080'

export default defineConfig({
  plugins: [vue()],
  // Relative asset URLs: the page works from any directory of any server.
  base: './',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2020',
    // No inline data: URLs for assets; everything comes from the web root.
    assetsInlineLimit: 0,
  },
  server: {
    host: '127.0.0.1',
    proxy: {
      '/ws': { target, ws: true },
      '/api': { target },
    },
  },
})
