import { expect } from 'chai';
import { AppError } from '../../lib/errors.js';
import { restSchemas } from '../../lib/protocol/schemas.js';
import { parse } from '../../lib/validation.js';

/** The `details` of the VALIDATION_FAILED that parsing `input` throws. */
function detailsOf(input: unknown): unknown {
  try {
    parse(restSchemas.createConversation, input);
  } catch (error) {
    expect(error).to.be.instanceOf(AppError);
    expect((error as AppError).code).to.equal('VALIDATION_FAILED');
    return (error as AppError).details;
  }
  throw new Error('parsed without an error');
}

describe('validation: a missing field is "is required" (docs/errors.md)', () => {
  // DOCS hunt: a conversation without its `type` was told `"must be one of: direct, group"`, where every other
  // missing field is `"is required"`.
  it('names a missing discriminator (POST /conversations without `type`) as required', () => {
    expect(detailsOf({})).to.deep.equal({ type: 'is required' });
    expect(detailsOf({ userId: '00000000-0000-4000-8000-000000000000' })).to.deep.equal({
      type: 'is required',
    });
  });

  it('keeps the list of allowed values for a `type` that is there but unknown', () => {
    expect(detailsOf({ type: 'channel' })).to.deep.equal({ type: 'must be one of: direct, group' });
    expect(detailsOf({ type: null })).to.deep.equal({ type: 'must be one of: direct, group' });
  });

  it('names the fields the chosen type lacks as required', () => {
    expect(detailsOf({ type: 'direct' })).to.deep.equal({ userId: 'is required' });
    expect(detailsOf({ type: 'group' })).to.deep.equal({
      title: 'is required',
      participantIds: 'is required',
    });
  });
});
