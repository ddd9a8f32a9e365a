import { expect } from 'chai';
import type { DatabaseConfig } from '../../lib/config.js';
import { pgConnectionConfig } from '../../lib/db.js';

const database: DatabaseConfig = {
  url: 'postgres://app:secret@db.internal:5433/chat',
  poolMax: 25,
  acquireTimeoutMs: 5000,
  statementTimeoutMs: 30_000,
  connectTimeoutMs: 10_000,
  stallTimeoutMs: 5000,
  sslMode: 'require',
  sslCa: undefined,
  slowQueryMs: 500,
  migrationsDir: undefined,
};

describe('pgConnectionConfig', () => {
  it('connects with the URL’s server, user, password and database only: no query parameter overrides the node’s settings', () => {
    // node-postgres lets every parameter of the connection string win over the settings beside it: ssl=0 would turn
    // DB_SSL_MODE=require off, statement_timeout=0 would lift DB_STATEMENT_TIMEOUT_MS, application_name would hide
    // the node's control connection from `xfchat jwt-secret adopt`.
    const url = `${database.url}?ssl=0&sslmode=disable&sslrootcert=/tmp/ca.pem&statement_timeout=0&application_name=x&options=-c%20search_path%3Devil`;
    const config = pgConnectionConfig({ ...database, url }, 'xfchat-app');
    expect(config).to.deep.include({
      host: 'db.internal',
      port: 5433,
      user: 'app',
      password: 'secret',
      database: 'chat',
    });
    expect(config).not.to.have.property('connectionString');
    expect(config.ssl).to.deep.equal({ rejectUnauthorized: false });
    expect(config.statement_timeout).to.equal(30_000);
    expect(config.application_name).to.equal('xfchat-app');
  });

  it('decodes every part of the URL whole, and takes a missing port for 5432 (not PGPORT)', () => {
    // node-postgres decodes a connection string's database name with decodeURI: `%2F` and `%40` stayed encoded.
    const config = pgConnectionConfig(
      { ...database, url: 'postgres://a%40b:p%2Fw%23@db.internal/chat%2Fone%40two' },
      'xfchat-app',
    );
    expect(config).to.deep.include({
      host: 'db.internal',
      port: 5432,
      user: 'a@b',
      password: 'p/w#',
      database: 'chat/one@two',
    });
  });

  it('takes a percent-encoded host for a Unix socket’s folder, and leaves a missing user and password to the driver', () => {
    const config = pgConnectionConfig(
      { ...database, url: 'postgres://%2Fvar%2Frun%2Fpostgresql/chat' },
      'xfchat-app',
    );
    expect(config).to.deep.include({ host: '/var/run/postgresql', user: undefined, password: undefined });
  });

  it('takes an IPv6 host without the brackets a URL writes it in', () => {
    const config = pgConnectionConfig({ ...database, url: 'postgres://app@[2001:db8::5]:5433/chat' }, 'x');
    expect(config).to.deep.include({ host: '2001:db8::5', port: 5433 });
  });
});
