'use strict';
// Checks that the load generator's client (sioclient.js) puts the same bytes on the wire as the
// official socket.io-client for the operations the benchmark uses:
//   websocket handshake request (path, query, extension offer), CONNECT (with and without an auth
//   payload, default and custom namespace), ping reply, event with ack, event without ack,
//   disconnect.
//
// How: a scripted in-process Engine.IO/Socket.IO server (ws) sits behind a TCP capture proxy.
// Each client runs the same script against it; the proxy records the client->server bytes, the
// check parses the HTTP upgrade request and the websocket frames (unmasking the payloads: the
// masking key is random per frame by design, everything else must match: FIN, RSV bits, opcode,
// mask bit, payload length encoding and payload bytes).
//
//   node bench/loadgen/check_protocol.js        exit 0 when identical, 1 otherwise

const net = require('net');
const { WebSocketServer } = require('ws');
const { io } = require('socket.io-client');
const { SioClient } = require('./sioclient');

const PAYLOAD = 'x'.repeat(64);

// ---- scripted server -----------------------------------------------------------------------
function startServer() {
  return new Promise((resolve) => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: true });
    wss.on('connection', (ws) => {
      ws.send(JSON.stringify({ sid: 'eiosid', upgrades: [], pingInterval: 60000, pingTimeout: 60000, maxPayload: 1000000 }).replace(/^/, '0'));
      ws.on('message', (data) => {
        const s = data.toString();
        if (s.startsWith('40')) {
          const nsp = s[2] === '/' ? s.slice(2, s.indexOf(',') + 1) : '';
          ws.send('40' + nsp + JSON.stringify({ sid: 'siosid' }));
          setTimeout(() => ws.send('2'), 20); // a ping once the namespace is connected
        } else if (s.startsWith('42')) {
          const m = /^42(\/[^,]*,)?(\d+)(\[.*)$/.exec(s);
          if (m) ws.send('43' + (m[1] || '') + m[2] + JSON.stringify([JSON.parse(m[3])[1]]));
        }
      });
    });
    wss.on('listening', () => resolve(wss));
  });
}

function startProxy(targetPort) {
  return new Promise((resolve) => {
    const captures = [];
    const srv = net.createServer((down) => {
      const cap = { bytes: [], closed: null };
      captures.push(cap);
      cap.closed = new Promise((r) => down.on('close', r));
      const up = net.connect(targetPort, '127.0.0.1');
      down.on('data', (d) => { cap.bytes.push(Buffer.from(d)); up.write(d); });
      up.on('data', (d) => down.write(d));
      down.on('end', () => up.end());
      up.on('end', () => down.end());
      down.on('error', () => up.destroy());
      up.on('error', () => down.destroy());
    });
    srv.listen(0, '127.0.0.1', () => resolve({ srv, captures, port: srv.address().port }));
  });
}

// ---- parse the client->server byte stream ---------------------------------------------------
const COMPARED_HEADERS = ['upgrade', 'connection', 'sec-websocket-version', 'sec-websocket-extensions', 'sec-websocket-protocol', 'origin'];
function parseCapture(buf) {
  const end = buf.indexOf('\r\n\r\n');
  const head = buf.slice(0, end).toString('latin1').split('\r\n');
  const headers = {};
  for (const line of head.slice(1)) {
    const k = line.slice(0, line.indexOf(':')).trim().toLowerCase();
    headers[k] = line.slice(line.indexOf(':') + 1).trim();
  }
  const frames = [];
  let i = end + 4;
  while (i + 2 <= buf.length) {
    const b0 = buf[i]; const b1 = buf[i + 1];
    let len = b1 & 0x7f; let p = i + 2; let lenEnc = 7;
    if (len === 126) { len = buf.readUInt16BE(p); p += 2; lenEnc = 16; } else if (len === 127) { len = Number(buf.readBigUInt64BE(p)); p += 8; lenEnc = 64; }
    const masked = !!(b1 & 0x80);
    let mask = null;
    if (masked) { mask = buf.slice(p, p + 4); p += 4; }
    if (p + len > buf.length) break;
    const payload = Buffer.from(buf.slice(p, p + len));
    if (mask) for (let k = 0; k < payload.length; k++) payload[k] ^= mask[k & 3];
    const opcode = b0 & 0x0f;
    frames.push({ fin: b0 >> 7, rsv: (b0 >> 4) & 7, opcode, masked, lenEnc, payload: payload.toString('hex'), text: opcode === 1 ? payload.toString('utf8') : opcode === 8 ? `<close ${payload.toString('hex')}>` : `<op ${opcode}>` });
    i = p + len;
  }
  return { requestLine: head[0], headers, frames };
}

// ---- the two clients, one script -----------------------------------------------------------
const until = (pred, ms = 3000) => new Promise((resolve, reject) => {
  const t0 = Date.now();
  const iv = setInterval(() => {
    if (pred()) { clearInterval(iv); resolve(); } else if (Date.now() - t0 > ms) { clearInterval(iv); reject(new Error('timeout')); }
  }, 5);
});

async function runOfficial(port, nsp, auth, cap) {
  const url = `http://127.0.0.1:${port}${nsp === '/' ? '' : nsp}`;
  const opts = { transports: ['websocket'], reconnection: false, forceNew: true };
  if (auth) opts.auth = auth;
  const s = io(url, opts);
  await new Promise((r, j) => { s.on('connect', r); s.on('connect_error', j); });
  await until(() => Buffer.concat(cap()).includes(Buffer.from([0x81, 0x81]))); // the 1-byte pong frame
  await new Promise((r) => s.emit('echo', PAYLOAD, r));
  await new Promise((r) => s.emit('fanout', { seq: 7 }, r));
  s.emit('note', { a: 1 });
  await new Promise((r) => setTimeout(r, 30));
  s.disconnect();
}

async function runOurs(port, nsp, auth, cap) {
  const c = new SioClient({ host: '127.0.0.1', port, nsp, auth });
  await new Promise((r, j) => c.connect((e) => (e ? j(e) : r())));
  await until(() => Buffer.concat(cap()).includes(Buffer.from([0x81, 0x81])));
  await new Promise((r) => c.emit('echo', PAYLOAD, r));
  await new Promise((r) => c.emit('fanout', { seq: 7 }, r));
  c.emit('note', { a: 1 });
  await new Promise((r) => setTimeout(r, 30));
  c.disconnect();
}

async function capture(proxy, fn, nsp, auth) {
  const idx = proxy.captures.length;
  const cap = () => (proxy.captures[idx] ? proxy.captures[idx].bytes : []);
  await fn(proxy.port, nsp, auth, cap);
  await until(() => proxy.captures[idx]);
  await Promise.race([proxy.captures[idx].closed, new Promise((r) => setTimeout(r, 1500))]);
  return parseCapture(Buffer.concat(proxy.captures[idx].bytes));
}

(async () => {
  const wss = await startServer();
  const proxy = await startProxy(wss.address().port);
  const cases = [
    { name: 'default namespace, JWT-style auth payload', nsp: '/', auth: { token: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJiZW5jaC0xIn0.c2ln' } },
    { name: 'default namespace, no auth', nsp: '/', auth: null },
    { name: 'custom namespace /chat, auth payload', nsp: '/chat', auth: { token: 't' } },
  ];
  let ok = true;
  for (const cs of cases) {
    const ref = await capture(proxy, runOfficial, cs.nsp, cs.auth);
    const ours = await capture(proxy, runOurs, cs.nsp, cs.auth);
    console.log(`\n== ${cs.name}`);
    const problems = [];
    if (ref.requestLine !== ours.requestLine) problems.push(`request line: socket.io-client "${ref.requestLine}" vs loadgen "${ours.requestLine}"`);
    for (const h of COMPARED_HEADERS) {
      if (ref.headers[h] !== ours.headers[h]) problems.push(`header ${h}: socket.io-client ${JSON.stringify(ref.headers[h])} vs loadgen ${JSON.stringify(ours.headers[h])}`);
    }
    console.log(`  ${ref.requestLine}  [extensions: ${ref.headers['sec-websocket-extensions'] || '-'}]`);
    const n = Math.max(ref.frames.length, ours.frames.length);
    for (let k = 0; k < n; k++) {
      const a = ref.frames[k]; const b = ours.frames[k];
      const strip = (f) => f && JSON.stringify({ fin: f.fin, rsv: f.rsv, opcode: f.opcode, masked: f.masked, lenEnc: f.lenEnc, payload: f.payload });
      const same = strip(a) === strip(b);
      if (!same) problems.push(`frame ${k}: socket.io-client ${a ? a.text : '<none>'} vs loadgen ${b ? b.text : '<none>'}${a && b && a.text === b.text ? ' (same text, different framing: ' + strip(a) + ' vs ' + strip(b) + ')' : ''}`);
      console.log(`  ${same ? 'same' : 'DIFF'}  ${a ? a.text : '<none>'}${same ? '' : '   |   ' + (b ? b.text : '<none>')}`);
    }
    if (ref.frames.length < 6) problems.push(`too few frames captured (${ref.frames.length}); the script did not run through`);
    if (problems.length) { ok = false; for (const p of problems) console.log('  MISMATCH ' + p); }
  }
  proxy.srv.close();
  wss.close();
  console.log(ok ? '\nprotocol check: OK (loadgen frames are byte-identical to socket.io-client)' : '\nprotocol check: FAILED');
  process.exit(ok ? 0 : 1);
})().catch((e) => { console.error(e); process.exit(1); });
