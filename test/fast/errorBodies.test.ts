import { expect } from 'chai';
import { fromErrorBody } from '../../lib/client/errors.js';
import { AppError, toAck, toAppError, toHttp } from '../../lib/errors.js';

describe('error bodies: what REST sends as Retry-After, an ack carries in details', () => {
  it('puts retryAfter in an ack’s details, and leaves the REST body without it (the header carries it)', () => {
    const limited = new AppError('RATE_LIMITED', { retryAfter: 3 });
    expect(toAck(limited)).to.deep.equal({
      ok: false,
      error: { code: 'RATE_LIMITED', message: limited.message, details: { retryAfter: 3 } },
    });
    expect(toHttp(limited).body).to.deep.equal({ error: { code: 'RATE_LIMITED', message: limited.message } });
    // Details of its own are kept as they are; an error without retryAfter gets none.
    const detailed = new AppError('VALIDATION_FAILED', { details: { body: 'required' } });
    expect(toAck(detailed).error.details).to.deep.equal({ body: 'required' });
    expect(toAck(new AppError('OVERLOADED')).error).not.to.have.property('details');
  });

  it('the SDK reads it back as retryAfter; a Retry-After header passed in wins', () => {
    const body = toAck(new AppError('RATE_LIMITED', { retryAfter: 2 })).error;
    expect(fromErrorBody(body).retryAfter).to.equal(2);
    expect(fromErrorBody(body, { retryAfter: 5 }).retryAfter).to.equal(5);
    expect(
      fromErrorBody({ code: 'RATE_LIMITED', message: 'm', details: { retryAfter: 'soon' } }).retryAfter,
    ).to.equal(undefined);
    expect(fromErrorBody({ code: 'NOT_FOUND', message: 'm' }).retryAfter).to.equal(undefined);
  });

  it("answers the driver's timeouts as DB_UNAVAILABLE (503, retryable), not INTERNAL", () => {
    // pg's query_timeout (a second past statement_timeout) and its connect timeout, as knex and objection pass them.
    for (const message of ['Query read timeout', 'timeout expired']) {
      expect(toAppError(new Error(message)).code, message).to.equal('DB_UNAVAILABLE');
      expect(toAppError({ nativeError: new Error(message) }).code, message).to.equal('DB_UNAVAILABLE');
    }
    // As Knex rethrows them: the statement, " - ", then pg's message.
    for (const message of [
      'SELECT 1 - Query read timeout',
      'SELECT $1 FROM t\n  WHERE x = $2 - timeout expired',
    ]) {
      expect(toAppError(new Error(message)).code, message).to.equal('DB_UNAVAILABLE');
      expect(toAppError({ nativeError: new Error(message) }).code, message).to.equal('DB_UNAVAILABLE');
    }
    expect(toAppError(new Error('Query read timeout in a body')).code).to.equal('INTERNAL');
    // Out of file descriptors, no connection to PostgreSQL can be opened: an outage of the node, not a bug.
    for (const code of ['EMFILE', 'ENFILE']) {
      expect(toAppError(Object.assign(new Error(`connect ${code}`), { code })).code, code).to.equal(
        'DB_UNAVAILABLE',
      );
    }
  });

  it('answers "cannot now" SQLSTATEs as DB_UNAVAILABLE: refusing writes (a standby), out of resources, a lock timeout', () => {
    // read_only_sql_transaction, disk_full, out_of_memory, insufficient_resources, configuration_limit_exceeded,
    // lock_not_available, idle_session_timeout.
    for (const code of ['25006', '53100', '53200', '53000', '53400', '55P03', '57P05']) {
      const err = Object.assign(new Error('refused'), { code });
      expect(toAppError(err).code, code).to.equal('DB_UNAVAILABLE');
      expect(toAppError({ nativeError: err }).code, code).to.equal('DB_UNAVAILABLE');
    }
    // A request the database refuses for what it is stays what it was: a bug of the node.
    for (const code of ['23505', '22001', '42601', '40P01'])
      expect(toAppError(Object.assign(new Error('refused'), { code })).code, code).to.equal('INTERNAL');
  });
});
