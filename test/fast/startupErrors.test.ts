import { expect } from 'chai';
import { loadDatabaseConfig } from '../../lib/config.js';
import { explainConnectError } from '../../lib/startupErrors.js';

/** The one line a failed first connection is explained with: the cause, then what to change. */
describe('startup errors: what a refused connection is explained as', () => {
  const config = loadDatabaseConfig({ DATABASE_URL: 'postgres://xfchat@db.internal:5432/xfchat' });
  const driverError = (message: string, code?: string) => Object.assign(new Error(message), { code });

  it('names pg_hba.conf when PostgreSQL has no entry for the client (it reports 28000, like a refused login)', () => {
    const line = explainConnectError(
      driverError(
        'no pg_hba.conf entry for host "10.0.0.5", user "xfchat", database "xfchat", no encryption',
        '28000',
      ),
      config,
    ).message;
    expect(line).to.match(/^PostgreSQL at db\.internal:5432 has no pg_hba\.conf entry for this client/);
    expect(line).to.include('DB_SSL_MODE=require');
  });

  it('says a password is missing when the server asks for one and the URL has none', () => {
    const line = explainConnectError(
      driverError('SASL: SCRAM-SERVER-FIRST-MESSAGE: client password must be a string'),
      config,
    ).message;
    expect(line).to.match(/asks user "xfchat" for a password and DATABASE_URL has none/);
  });

  it('still names a refused login as one', () => {
    const line = explainConnectError(
      driverError('password authentication failed for user "xfchat"', '28P01'),
      config,
    ).message;
    expect(line).to.match(/refused the login of user "xfchat"/);
  });

  it('names an IPv6 host in brackets and a Unix socket folder decoded, with the port the URL means', () => {
    const refused = driverError('connect ECONNREFUSED', 'ECONNREFUSED');
    const at = (url: string) =>
      explainConnectError(refused, loadDatabaseConfig({ DATABASE_URL: url })).message;
    expect(at('postgres://xfchat@[2001:db8::5]/xfchat')).to.match(
      /^PostgreSQL at \[2001:db8::5\]:5432 refused/,
    );
    expect(at('postgres://xfchat@%2Fvar%2Frun%2Fpostgresql:5433/xfchat')).to.match(
      /^PostgreSQL at \/var\/run\/postgresql:5433 refused/,
    );
  });
});
