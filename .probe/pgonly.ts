import pg from 'pg';
const client = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/xfexp' });
await client.connect();
const pairs = (await import('node:fs')).readFileSync('/tmp/pairs.txt', 'utf8').trim().split('\n').map((l) => l.split(' '));
const [conv, user] = pairs[0]!;
const measure = async (name: string, fn: (i: number) => Promise<unknown>) => {
  const lat: number[] = [];
  for (let i = 0; i < 200; i++) {
    const t0 = performance.now();
    await fn(i);
    lat.push(performance.now() - t0);
    await new Promise((r) => setTimeout(r, 20));
  }
  lat.sort((x, y) => x - y);
  console.log(name, 'p50', lat[100]!.toFixed(3), 'p90', lat[180]!.toFixed(3));
};
let n = Date.now();
await measure('select 1', () => client.query('SELECT 1'));
await measure('xfchat_write 1', () => client.query({ name: 'w', text: `SELECT * FROM xfchat_write($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], '{}', '{}', '{}', '{}', '{}', NULL, NULL, false)`, values: [[conv], [user], [`p${n++}`], ['hello'], [null]] }));
await measure('insert 1 (B1)', () => client.query({ name: 'b', text: `INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body) VALUES ($1, $2, $3, $4, 'x')`, values: [pairs[98]![0], pairs[98]![1], n++, `b${n}`] }));
await client.end();
