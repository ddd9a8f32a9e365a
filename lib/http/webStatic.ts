import { access } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { Router } from 'express';

/**
 * Where `npm run build:web` writes the browser app: `dist/web` of the project, found from this file's place
 * both when it runs from source (`lib/http/`, under tsx) and compiled (`dist/lib/http/`).
 */
export function defaultWebDir(): string {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
  return path.basename(root) === 'dist' ? path.join(root, 'web') : path.join(root, 'dist', 'web');
}

/** A conversation's address in the app (see web/router.ts). */
const CONVERSATION_PAGE = '/c/:conversationId';

const NOT_BUILT = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>XFChat: web app not built</title></head>
<body><h1>The XFChat web app is not built</h1>
<p>The API is running, but the browser app has not been built yet. Run <code>npm run build:web</code>
(or <code>npm run build</code>), then reload this page.</p></body></html>
`;

/** Whether a request path names a source map, percent-encoded or not (one that cannot be decoded is not served). */
function isSourceMap(path: string): boolean {
  try {
    return decodeURIComponent(path).toLowerCase().endsWith('.map');
  } catch {
    return true;
  }
}

/**
 * Serves the browser app from `webDir` (static files only, never a `.map`; the API routes are mounted before
 * this), and the same page at `/c/<conversationId>`, the address of each conversation in the app (so such a URL
 * survives a reload or a bookmark). When the app is not built, those pages explain how to build it instead of a
 * bare 404.
 */
export function webRoutes(webDir: string = defaultWebDir()): Router {
  const router = Router();
  const serve = express.static(webDir, {
    index: 'index.html',
    // No redirect from a directory's path to the same with a slash: the app has no directories, and the file
    // server writes a backslash in the path as is ("/\\evil.example/%2e%2e" gave "Location: /\\evil.example/..",
    // which a browser follows to evil.example).
    redirect: false,
    // The page must always be revalidated so a rebuilt app.js is picked up; assets use ETags.
    setHeaders(res, file) {
      if (file.endsWith('.html')) res.setHeader('Cache-Control', 'no-cache');
    },
  });
  // Source maps are never served, even one left in dist/web by an older build: a map carries the whole source.
  // Looked at as the file server reads the path: decoded (`/app.js%2Emap` is `/app.js.map`), in any case.
  router.use((req, res, next) => (isSourceMap(req.path) ? next() : serve(req, res, next)));
  router.get(CONVERSATION_PAGE, (_req, res, next) => {
    res.setHeader('Cache-Control', 'no-cache');
    res.sendFile('index.html', { root: webDir }, (err?: NodeJS.ErrnoException) => {
      if (!err) return;
      // Not built: the answer below says so. Anything else is a real failure.
      if (err.code === 'ENOENT' && !res.headersSent) next();
      else next(err);
    });
  });
  // Only when the app is not built: "/index.html/" reaches here on a built app too (the file server passes on a
  // path past a file, and routes take a trailing slash), and is no page of it.
  router.get(['/', '/index.html', CONVERSATION_PAGE], (_req, res, next) => {
    access(path.join(webDir, 'index.html')).then(
      () => next(),
      () => res.status(503).type('html').setHeader('Cache-Control', 'no-store').send(NOT_BUILT),
    );
  });
  return router;
}
