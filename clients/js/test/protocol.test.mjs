import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CLOSE_CODE_RANGES, CLOSE_CODES, DecodeError, classify, decode, encode, isRetryable, reconnectFor, vectors } from './helpers.mjs';

const messages = vectors('messages.json');
const closeCodes = vectors('close_codes.json');

for (const c of messages.server_to_client) {
  test(`decodes server vector: ${c.name}`, () => {
    assert.deepEqual(decode(c.frame), c.expect.decoded);
  });
}

for (const c of messages.client_to_server.filter((c) => c.expect.decoded)) {
  test(`encodes client vector: ${c.name}`, () => {
    const frame = encode(c.expect.decoded);
    assert.deepEqual(JSON.parse(frame), c.expect.decoded);
    // Frames without extra fields are byte-for-byte what the client sends.
    if (Object.keys(JSON.parse(c.frame)).length === Object.keys(c.expect.decoded).length) {
      assert.equal(frame, c.frame);
    }
  });
}

test('decoding is lenient: unknown types are ignored, malformed frames throw', () => {
  assert.equal(decode('{"type":"future","x":1}'), null);
  assert.throws(() => decode('{"type":'), DecodeError);
  assert.throws(() => decode('[1]'), DecodeError);
  assert.throws(() => decode('{"type":"ack","id":"x","offset":1}'), DecodeError);
  assert.deepEqual(decode('{"type":"close","code":4002,"reason":"token expired"}'), {
    type: 'close',
    code: 4002,
    reason: 'token expired',
  });
  // An id-less subscribed (long polling's resync signal).
  assert.deepEqual(decode('{"type":"subscribed","channel":"a","epoch":"e","offset":3,"recovered":false}'), {
    type: 'subscribed',
    channel: 'a',
    epoch: 'e',
    offset: 3,
    recovered: false,
    publications: [],
  });
  assert.equal(decode('{"type":"welcome","client":"c","ping_interval_ms":1,"pong_timeout_ms":2,"version":1,"poll_timeout_ms":7}').poll_timeout_ms, 7);
});

test('publish with undefined data still carries data', () => {
  assert.equal(encode({ type: 'publish', id: 1, channel: 'a', data: undefined }), '{"type":"publish","id":1,"channel":"a","data":null}');
});

test('the close-code table matches close_codes.json', () => {
  assert.equal(Object.keys(CLOSE_CODES).length, closeCodes.codes.length);
  for (const { code, name, reconnect } of closeCodes.codes) {
    assert.equal(CLOSE_CODES[code].name, name, `${code}`);
    assert.equal(reconnectFor(code), reconnect, `${code}`);
    assert.equal(classify({ kind: 'closed', code, reason: 'x' }).reconnect, reconnect);
  }
  // Application refusals: every unnamed code of a range follows the range.
  assert.deepEqual(CLOSE_CODE_RANGES, closeCodes.ranges);
  for (const { from, to, reconnect } of closeCodes.ranges) {
    for (let code = from; code <= to; code++) {
      if (CLOSE_CODES[code]) continue;
      assert.equal(reconnectFor(code), reconnect, `${code}`);
      assert.equal(classify({ kind: 'closed', code, reason: 'x' }).reconnect, reconnect, `${code}`);
    }
  }
  for (const code of [1002, 1003, 1007, 3000, 5000]) assert.equal(reconnectFor(code), closeCodes.otherwise, `${code}`);
  assert.equal(reconnectFor(4001), 'never'); // named: not its range's rule
  assert.equal(reconnectFor(4999), 'never');
  assert.equal(classify({ kind: 'lost', reason: 'x' }).code, 1006);
  for (const status of [400, 401, 403, 404]) assert.equal(classify({ kind: 'refused', status, reason: '' }).reconnect, 'never');
  for (const status of [429, 500, 502, 503]) assert.equal(classify({ kind: 'refused', status, reason: '' }).reconnect, 'backoff');
});

test('the retryable error codes match error_codes.json', () => {
  for (const { code, retryable } of vectors('error_codes.json')) {
    assert.equal(isRetryable(code), retryable, code);
  }
  assert.equal(isRetryable('something_new'), false);
});
