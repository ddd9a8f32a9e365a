import argon2 from 'argon2';
import { expect } from 'chai';
import type { PublicUser } from '../lib/protocol/index.js';
import { request } from './helpers/http.js';
import { useNode } from './helpers/nodes.js';
import { uniqueUsername } from './helpers/users.js';

interface AuthBody {
  user: PublicUser;
  token: string;
}

const PASSWORD = 'correct horse battery';

/** How passwords are stored and checked: argon2id parameters, upgrades, no truncation, no timing oracle. */
describe('accounts: password storage', function () {
  const { server } = useNode();

  const signup = (body: unknown) => request<AuthBody>(server.url, 'POST', '/auth/signup', { body });
  const login = (body: unknown) => request<AuthBody>(server.url, 'POST', '/auth/login', { body });

  it('stores an argon2id hash with m >= 19456, t >= 2, p = 1, and never the password', async () => {
    const username = uniqueUsername();
    const res = await signup({ username, password: PASSWORD });
    expect(res.status).to.equal(201);
    const row = (await server.services.db.knex('users').where({ id: res.body.user.id }).first()) as {
      password_hash: string;
    };
    // PHC string: $argon2id$v=19$<k=v,...>$salt$hash; the parameter order is the library's choice.
    const parts = row.password_hash.split('$');
    expect(parts, row.password_hash).to.have.length(6);
    expect(parts[1]).to.equal('argon2id');
    expect(parts[2]).to.equal('v=19');
    const params = Object.fromEntries(parts[3]!.split(',').map((kv) => kv.split('=') as [string, string]));
    expect(Object.keys(params).sort()).to.deep.equal(['m', 'p', 't']);
    expect(Number(params.m)).to.be.at.least(19456);
    expect(Number(params.t)).to.be.at.least(2);
    expect(Number(params.p)).to.equal(1);
    expect(parts[4]).to.match(/^[A-Za-z0-9+/]{16,}$/);
    expect(parts[5]).to.match(/^[A-Za-z0-9+/]{32,}$/);
    expect(row.password_hash).not.to.include(PASSWORD);
  });

  it('re-hashes a password stored with weaker parameters at the next successful login', async () => {
    const username = uniqueUsername();
    const weak = await argon2.hash(PASSWORD, {
      type: argon2.argon2id,
      memoryCost: 8192,
      timeCost: 1,
      parallelism: 1,
    });
    await server.services.db.knex('users').insert({ username, display_name: username, password_hash: weak });
    const stored = async () =>
      ((await server.services.db.knex('users').where({ username }).first()) as { password_hash: string })
        .password_hash;
    expect((await login({ username, password: 'not the password' })).status).to.equal(401);
    expect(await stored()).to.equal(weak);
    expect((await login({ username, password: PASSWORD })).status).to.equal(200);
    const upgraded = await stored();
    expect(upgraded).to.match(/^\$argon2id\$v=19\$/);
    expect(upgraded).to.include('m=19456').and.include('t=2').and.include('p=1');
    expect((await login({ username, password: PASSWORD })).status).to.equal(200);
  });

  // "Café crème" typed with one code point per accented letter (most keyboards) and with a letter and a combining
  // accent (some, and text pasted from macOS) were two passwords: a user who signed up on one could not log in from
  // the other (IDENT hunt). Passwords are hashed in Unicode's composed form (NFC).
  it('takes a password with its accents composed or decomposed as the same password, and moves older hashes over', async () => {
    const composed = 'Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e';
    const decomposed = composed.normalize('NFD');
    expect(decomposed).to.not.equal(composed);
    for (const [signedUpWith, loggedInWith] of [
      [composed, decomposed],
      [decomposed, composed],
    ]) {
      const username = uniqueUsername();
      expect((await signup({ username, password: signedUpWith })).status).to.equal(201);
      expect((await login({ username, password: loggedInWith })).status, 'the other form').to.equal(200);
      expect((await login({ username, password: signedUpWith })).status, 'the same form').to.equal(200);
      expect((await login({ username, password: 'Cafe creme brulee' })).status).to.equal(401);
    }
    // A hash made before: of the password as it was sent, decomposed. Only that form matches it; its first login
    // stores the hash of the composed form, and from then on both forms log in.
    const username = uniqueUsername();
    const before = await argon2.hash(decomposed, { type: argon2.argon2id, memoryCost: 19456, timeCost: 2 });
    await server.services.db
      .knex('users')
      .insert({ username, display_name: username, password_hash: before });
    expect((await login({ username, password: decomposed })).status).to.equal(200);
    const [row] = (await server.services.db.knex('users').where({ username })) as Array<{
      password_hash: string;
    }>;
    expect(row!.password_hash).to.not.equal(before);
    expect(await argon2.verify(row!.password_hash, composed)).to.equal(true);
    expect((await login({ username, password: composed })).status).to.equal(200);
  });

  // The length rules counted the password as sent: 128 composed accented letters signed up, and typed decomposed
  // (256 code points) were refused at login; 4 letters typed decomposed (8 code points) passed signup's minimum of 8
  // (I18N hunt). Both forms are one password, of one length: its composed form's.
  it('counts a password in its composed form: a long one logs in decomposed, a short one is short in both forms', async () => {
    const username = uniqueUsername();
    const composed = '\u00e9'.repeat(100) + 'x'.repeat(28);
    expect([...composed]).to.have.length(128);
    expect((await signup({ username, password: composed })).status).to.equal(201);
    const decomposed = await login({ username, password: composed.normalize('NFD') });
    expect(decomposed.status, JSON.stringify(decomposed.body)).to.equal(200);
    const tooLong = await login({ username, password: 'x'.repeat(513) });
    expect(tooLong.status, 'past any form of 128 characters').to.equal(400);

    // A few characters grow in NFC: U+095B (a Devanagari letter on Hindi keyboards) is two code points there. 128 of
    // them are 128 characters typed, as before lengths counted the composed form (REV1): taken and logged in with.
    const growing = '\u095B'.repeat(128);
    expect([...growing.normalize('NFC')]).to.have.length(256);
    const hindi = uniqueUsername();
    expect((await signup({ username: hindi, password: growing })).status).to.equal(201);
    expect((await login({ username: hindi, password: growing })).status).to.equal(200);
    // Typed decomposed (as a Hindi keyboard sends it: U+0921 U+093C), 256 code points in every form: the same
    // password, which logs in (REV3).
    const typed = growing.normalize('NFD');
    expect([...typed.normalize('NFC')]).to.have.length(256);
    expect((await login({ username: hindi, password: typed })).status).to.equal(200);

    const short = '\u00e9\u00e8\u00ea\u00eb';
    for (const form of [short, short.normalize('NFD')]) {
      const res = await signup({ username: uniqueUsername(), password: form });
      expect(res.status, `${[...form].length} code points as sent`).to.equal(400);
    }
  });

  it('never truncates a password: a long one must match in full', async () => {
    const username = uniqueUsername();
    const password = `${'a'.repeat(100)}tail`;
    expect((await signup({ username, password })).status).to.equal(201);
    expect((await login({ username, password: 'a'.repeat(72) })).status).to.equal(401);
    expect((await login({ username, password: 'a'.repeat(100) })).status).to.equal(401);
    expect((await login({ username, password: `${'a'.repeat(100)}tai` })).status).to.equal(401);
    expect((await login({ username, password })).status).to.equal(200);
  });

  it('spends an argon2 verification on an unknown user too (comparable time to a wrong password)', async () => {
    const username = uniqueUsername();
    expect((await signup({ username, password: PASSWORD })).status).to.equal(201);
    const wrongMs: number[] = [];
    const unknownMs: number[] = [];
    const timed = async (body: unknown) => {
      const t0 = performance.now();
      const res = await login(body);
      expect(res.status).to.equal(401);
      return performance.now() - t0;
    };
    // Interleaved, so machine load affects both series alike; medians ignore the odd slow request.
    for (let i = 0; i < 7; i++) {
      wrongMs.push(await timed({ username, password: `wrong-${i}-password` }));
      unknownMs.push(await timed({ username: uniqueUsername(), password: `wrong-${i}-password` }));
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    // Without the dummy hash an unknown user answers in ~2 ms against ~40+ ms: a ratio near 0.05.
    expect(median(unknownMs) / median(wrongMs)).to.be.greaterThan(0.4);
  });
});
