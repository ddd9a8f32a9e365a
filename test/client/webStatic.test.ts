import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import express from 'express';
import { defaultWebDir, webRoutes } from '../../lib/http/webStatic.js';
import { buildWeb } from '../../web/build.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { expectError } from '../helpers/errors.js';
import { useNode } from '../helpers/nodes.js';
import { rawRequest } from '../helpers/rawHttp.js';
import { startTestServer } from '../helpers/server.js';

describe('the browser app served by the server', function () {
  const { server } = useNode();

  before(async () => {
    await buildWeb(defaultWebDir());
  });

  it('serves the page at / under a CSP that allows only same-origin scripts, and the page has no inline script', async () => {
    const res = await fetch(`${server.url}/`);
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type')).to.match(/^text\/html/);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).to.include("script-src 'self'");
    expect(csp).to.include("default-src 'self'");
    const html = await res.text();
    expect(html).to.include('<script type="module" src="/app.js"></script>');
    // Every script has a src: an inline one would be refused by script-src 'self'.
    expect(html.match(/<script\b[^>]*>/g)?.every((tag) => /\ssrc=/.test(tag))).to.equal(true);
    expect(html).not.to.match(/\son[a-z]+=/i);
  });

  it('asks the browser to upgrade requests to HTTPS only on pages served over HTTPS, keeping every other directive', async () => {
    const directives = (csp: string | null) =>
      (csp ?? '')
        .split(';')
        .map((d) => d.trim())
        .filter((d) => d !== '')
        .sort();
    // Plain HTTP, here to 127.0.0.1 as to any host name: upgrading would send the scripts' requests to https.
    const plain = directives((await fetch(`${server.url}/`)).headers.get('content-security-policy'));
    expect(plain).not.to.include('upgrade-insecure-requests');
    expect(plain).to.include("script-src 'self'");
    // A proxy header is not believed unless TRUST_PROXY_HOPS says a proxy is there.
    const spoofed = await fetch(`${server.url}/`, { headers: { 'x-forwarded-proto': 'https' } });
    expect(directives(spoofed.headers.get('content-security-policy'))).to.deep.equal(plain);

    const proxied = await startTestServer(await createTestDatabase(), { TRUST_PROXY_HOPS: '1' });
    try {
      const https = await fetch(`${proxied.url}/`, { headers: { 'x-forwarded-proto': 'https' } });
      const secure = directives(https.headers.get('content-security-policy'));
      expect(secure).to.deep.equal([...plain, 'upgrade-insecure-requests'].sort());
      // The API's answers carry the same policy.
      const api = await fetch(`${proxied.url}/healthz`, { headers: { 'x-forwarded-proto': 'https' } });
      expect(directives(api.headers.get('content-security-policy'))).to.deep.equal(secure);
    } finally {
      await proxied.close();
    }
  });

  it('serves the page at /c/<conversationId>, the address of a conversation in the app', async () => {
    const page = await fetch(`${server.url}/c/7b0c1f8e-4a8e-4d1c-9a43-0f6f2d9c1e55`);
    expect(page.status).to.equal(200);
    expect(page.headers.get('content-type')).to.match(/^text\/html/);
    expect(page.headers.get('cache-control')).to.equal('no-cache');
    expect(page.headers.get('content-security-policy')).to.include("script-src 'self'");
    expect(await page.text()).to.equal(await (await fetch(`${server.url}/`)).text());
    // Only one level: deeper paths are not pages of the app.
    expect((await fetch(`${server.url}/c/a/b`)).status).to.equal(404);
  });

  it('serves the bundle and the stylesheet, and the API keeps answering JSON', async () => {
    const script = await fetch(`${server.url}/app.js`);
    expect(script.status).to.equal(200);
    expect(script.headers.get('content-type')).to.match(/javascript/);
    const body = await script.text();
    expect(body.length).to.be.greaterThan(1000);
    // The bundle carries the SDK, not server code.
    expect(body).not.to.match(/\bknex\b|objection|argon2/);
    const css = await fetch(`${server.url}/styles.css`);
    expect(css.headers.get('content-type')).to.match(/^text\/css/);

    const health = await fetch(`${server.url}/healthz`);
    expect(await health.json()).to.deep.equal({ status: 'ok' });
    const missing = await fetch(`${server.url}/no/such/route`);
    expectError({ status: missing.status, body: await missing.json() }, 404, 'NOT_FOUND');
  });

  it('publishes no source map: none is built, and a .map left in dist/web is not served', async () => {
    const script = await (await fetch(`${server.url}/app.js`)).text();
    expect(script).not.to.include('sourceMappingURL');
    await writeFile(path.join(defaultWebDir(), 'stale.js.map'), '{"sources":["secret.ts"]}');
    try {
      // Percent-encoded too: the file server decodes the path before it reads the file.
      for (const file of [
        '/app.js.map',
        '/stale.js.map',
        '/stale.js%2Emap',
        '/stale.js.%6Dap',
        '/stale.js.MAP',
      ]) {
        const res = await fetch(`${server.url}${file}`);
        expectError({ status: res.status, body: await res.json() }, 404, 'NOT_FOUND', file);
      }
    } finally {
      await rm(path.join(defaultWebDir(), 'stale.js.map'), { force: true });
    }
  });

  // A built app answered "/index.html/" with the page saying it was not built (503); a raw backslash path to the
  // app's directory was redirected to "/\\evil.example/...", which a browser follows to another host (WEBSEC hunt).
  it('answers a path past the page, or a raw backslash path to its directory, with 404 and no redirect', async () => {
    for (const target of ['/index.html/', '/index.html/x']) {
      const res = await fetch(`${server.url}${target}`);
      expectError({ status: res.status, body: await res.json() }, 404, 'NOT_FOUND', target);
    }
    for (const target of ['/\\evil.example/%2e%2e', '/%2e%2e', '/x/..']) {
      const res = await rawRequest(server.url, { method: 'GET', target, headers: [['Host', '127.0.0.1']] });
      expect(res.headers.location, target).to.equal(undefined);
      expect(res.status, target).to.be.oneOf([200, 400, 404]);
    }
  });

  it('explains how to build the app when it is not built, instead of a bare 404', async () => {
    const emptyDir = await mkdtemp(path.join(os.tmpdir(), 'xfchat-web-'));
    const app = express().use(webRoutes(emptyDir));
    const bare: Server = await new Promise((resolve) => {
      const listening = app.listen(0, '127.0.0.1', () => resolve(listening));
    });
    try {
      const { port } = bare.address() as AddressInfo;
      const res = await fetch(`http://127.0.0.1:${port}/`);
      expect(res.status).to.equal(503);
      expect(await res.text()).to.include('npm run build:web');
      const conversation = await fetch(`http://127.0.0.1:${port}/c/some-id`);
      expect(conversation.status).to.equal(503);
      expect(await conversation.text()).to.include('npm run build:web');
      // Other paths are not the app's business: they fall through to the next handler.
      expect((await fetch(`http://127.0.0.1:${port}/app.js`)).status).to.equal(404);
    } finally {
      await new Promise<void>((resolve, reject) => bare.close((err) => (err ? reject(err) : resolve())));
      await rm(emptyDir, { recursive: true, force: true });
    }
  });

  it('builds from web/: the page in dist/web is web/index.html', async () => {
    const source = await readFile(
      path.join(path.dirname(defaultWebDir()), '..', 'web', 'index.html'),
      'utf8',
    );
    expect(await readFile(path.join(defaultWebDir(), 'index.html'), 'utf8')).to.equal(source);
  });
});
