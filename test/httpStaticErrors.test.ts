import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import express from 'express';
import { createErrorMiddleware, notFoundHandler } from '../lib/http/errorMiddleware.js';
import { webRoutes } from '../lib/http/webStatic.js';

const SCRIPT = 'export const answer = 42;\n';

/**
 * The web app's file server (webRoutes) in front of the production error middleware, over files of the test's own:
 * the refusals of a request's Range or conditions come from the file server after it has set the file's headers.
 */
describe('the web app’s files: refused ranges and conditions', function () {
  let dir: string;
  let server: Server;
  let url: string;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'xfchat-static-errors-'));
    await writeFile(path.join(dir, 'app.js'), SCRIPT);
    await writeFile(path.join(dir, 'styles.css'), 'body { margin: 0; }\n');
    const app = express().use(webRoutes(dir)).use(notFoundHandler).use(createErrorMiddleware());
    server = await new Promise<Server>((resolve) => {
      const listening = app.listen(0, '127.0.0.1', () => resolve(listening));
    });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  /**
   * The response's status, its headers that describe a file, and its body. Its ETag only as whether it is the file's
   * (Express tags every answer's body, the error's JSON too).
   */
  async function answer(res: Response, file: string) {
    const fileTag = (await fetch(`${url}/${file}`, { method: 'HEAD' })).headers.get('etag');
    expect(fileTag).to.be.a('string');
    const headers = Object.fromEntries(
      ['content-type', 'content-range', 'last-modified', 'accept-ranges', 'cache-control'].map((name) => [
        name,
        res.headers.get(name),
      ]),
    );
    return {
      status: res.status,
      headers: { ...headers, fileEtag: res.headers.get('etag') === fileTag },
      body: (await res.json()) as unknown,
    };
  }

  it('answers a Range past the end of a file 416 with the JSON envelope, the file’s length and none of its headers', async () => {
    const res = await fetch(`${url}/app.js`, { headers: { Range: 'bytes=999999999-' } });
    expect(await answer(res, 'app.js')).to.deep.equal({
      status: 416,
      headers: {
        'content-type': 'application/json; charset=utf-8',
        'content-range': `bytes */${Buffer.byteLength(SCRIPT)}`,
        fileEtag: false,
        'last-modified': null,
        'accept-ranges': null,
        'cache-control': null,
      },
      body: {
        error: {
          code: 'VALIDATION_FAILED',
          message: 'The requested range is not satisfiable.',
          details: { range: 'not satisfiable' },
        },
      },
    });
  });

  it('answers a failed If-Match on a file 412 with the JSON envelope and none of the file’s headers', async () => {
    const res = await fetch(`${url}/styles.css`, { headers: { 'If-Match': '"not-the-etag"' } });
    expect(await answer(res, 'styles.css')).to.deep.equal({
      status: 412,
      headers: {
        'content-type': 'application/json; charset=utf-8',
        'content-range': null,
        fileEtag: false,
        'last-modified': null,
        'accept-ranges': null,
        'cache-control': null,
      },
      body: {
        error: {
          code: 'VALIDATION_FAILED',
          message: 'A precondition of the request does not hold.',
          details: { precondition: 'failed' },
        },
      },
    });
  });
});
