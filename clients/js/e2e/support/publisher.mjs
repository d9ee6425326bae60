// The backend publisher: `POST /api/publish` straight to the server (never
// through the fault proxy), as an application backend would.

/** Publishes `data` to `channel`; resolves with `{ offset, epoch }`. */
export async function publish(server, channel, data) {
  const res = await fetch(`${server.url}/api/publish`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ channel, data }),
    signal: AbortSignal.timeout(5_000),
  });
  const body = await res.text();
  if (res.status !== 200) throw new Error(`POST /api/publish answered ${res.status}: ${body}`);
  return JSON.parse(body);
}

/**
 * Publishes `{ n: i }` for i = 1..count to `channel`, one after the other,
 * calling `between(i)` (awaited) after each; resolves with the offsets.
 */
export async function publishSeries(server, channel, count, between = async () => {}) {
  const offsets = [];
  for (let i = 1; i <= count; i++) {
    const { offset } = await publish(server, channel, { n: i });
    offsets.push(offset);
    await between(i);
  }
  return offsets;
}
