'use strict';
// Load generator for bench/run.py. One process runs one scenario against one server.
//
//   node loadgen.js '<json config>'
//
// stdout: JSON lines. {"type":"mark","name":...,"wait":bool} lets the orchestrator sample the
// server (RSS, CPU); when wait is true the generator blocks until the orchestrator writes one
// line on stdin. The last line is {"type":"result", ...}. Diagnostics go to stderr.
//
// Config keys: scenario (a|b|c|d|e), host, port, path, nsp, deflate, auth, connectTimeoutMs
// and the scenario parameters (see DEFAULTS). `auth` is null (send `40`), {"static": {...}}
// (same CONNECT payload for every client) or {"jwt": {"secret", "sub_prefix", "roles", "ttl_s",
// "payload_key"}} (an HS256 token per client, sub = sub_prefix + client index).

const crypto = require('crypto');
const readline = require('readline');
const { SioClient } = require('./sioclient');

const DEFAULTS = {
  host: '127.0.0.1',
  port: 0,
  path: '/socket.io/',
  nsp: '/',
  deflate: true,
  auth: null,
  connectTimeoutMs: 10000,
  setupConcurrency: 50, // handshakes in flight while setting up clients for a, b and e
  // a: closed loop
  clients: 50,
  payloadBytes: 64,
  durationS: 30,
  warmupS: 2,
  // b: open loop
  ratePerClient: 1,
  ackTimeoutMs: 5000,
  // c: idle connections
  connections: 5000,
  rampPerS: 500,
  holdS: 5,
  // d: connect rate
  inFlight: 50,
  // e: fan-out
  rounds: 30,
  warmupRounds: 2,
  roundGapMs: 200,
  roundTimeoutMs: 10000,
  // f, g, s: a victim load (open loop) while attackers run, each from its own loopback address
  victimClients: 200,
  victimRate: 5, // messages per second per victim client
  victimPerAddress: 10, // victim clients per source address (127.0.1.x): under max_per_ip and the connect burst
  phaseS: 15,
  // f: connect flood
  floodPerS: 650,
  floodMaxInFlight: 400,
  floodAddress: '127.0.0.2',
  // g: oversize frames
  senders: 4,
  frameBytes: [1048576, 10485760],
  framesPerSPerSender: 4, // under production's connects_per_ip (5/s): the frames, not bans, are measured
  // s: soak
  steadyClients: 2000,
  churnPerS: 50,
  churnHoldMs: 1000,
  sampleEveryS: 30,
  leaveWaitS: 5,
};

const cfg = Object.assign({}, DEFAULTS, JSON.parse(process.argv[2] || '{}'));

function log(...a) { process.stderr.write('[loadgen] ' + a.join(' ') + '\n'); }
function out(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- orchestrator marks -------------------------------------------------------------------
const rl = readline.createInterface({ input: process.stdin });
const lineWaiters = [];
rl.on('line', () => { const w = lineWaiters.shift(); if (w) w(); });
rl.on('close', () => { while (lineWaiters.length) lineWaiters.shift()(); });
function mark(name, wait, extra) {
  out(Object.assign({ type: 'mark', name, wait: !!wait, t_ms: nowMs() }, extra || {}));
  if (!wait) return Promise.resolve();
  return new Promise((r) => lineWaiters.push(r));
}

// ---- auth ---------------------------------------------------------------------------------
const b64u = (buf) => Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
function mintJwt(secret, claims) {
  const head = b64u(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64u(JSON.stringify(claims));
  const sig = b64u(crypto.createHmac('sha256', secret).update(head + '.' + body).digest());
  return `${head}.${body}.${sig}`;
}
function authFor(i) {
  const a = cfg.auth;
  if (!a) return null;
  if (a.static) return a.static;
  if (a.jwt) {
    const j = a.jwt;
    const now = Math.floor(Date.now() / 1000);
    const claims = Object.assign({ sub: (j.sub_prefix || 'bench-') + i, roles: j.roles || ['user'], iat: now, exp: now + (j.ttl_s || 3600) }, j.extra_claims || {});
    return { [j.payload_key || 'token']: mintJwt(j.secret, claims) };
  }
  throw new Error('unknown auth config ' + JSON.stringify(a));
}

// ---- stats --------------------------------------------------------------------------------
function pct(sorted, p) {
  if (!sorted.length) return null;
  const k = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[k];
}
function summarize(arr) {
  const s = Float64Array.from(arr).sort();
  return { n: s.length, p50: pct(s, 50), p99: pct(s, 99), max: s.length ? s[s.length - 1] : null, min: s.length ? s[0] : null };
}
class Samples {
  constructor() { this.buf = new Float64Array(1 << 16); this.n = 0; }
  push(v) {
    if (this.n === this.buf.length) { const b = new Float64Array(this.buf.length * 2); b.set(this.buf); this.buf = b; }
    this.buf[this.n++] = v;
  }
  summary() { return summarize(this.buf.subarray(0, this.n)); }
}
function newFailures() { return { refused: 0, timeout: 0, reset: 0, rejected: 0, http: 0, closed: 0, other: 0, examples: {} }; }
function countFailure(f, err) {
  const k = err.kind in f ? err.kind : 'other';
  f[k]++;
  if (!f.examples[k]) f.examples[k] = String(err.message).slice(0, 200) + (err.detail !== undefined ? ` (${String(err.detail).slice(0, 100)})` : '');
}
class CpuWindow {
  start() { this.c0 = process.cpuUsage(); this.t0 = nowMs(); }
  stop() {
    const c = process.cpuUsage(this.c0);
    const wall = nowMs() - this.t0;
    return { cpu_ms: (c.user + c.system) / 1000, wall_ms: wall, cpu_fraction: wall > 0 ? (c.user + c.system) / 1000 / wall : 0 };
  }
}

// ---- connection helpers -------------------------------------------------------------------
function makeClient(i, extra) {
  return new SioClient(Object.assign({
    host: cfg.host, port: cfg.port, path: cfg.path, nsp: cfg.nsp, deflate: cfg.deflate,
    auth: authFor(i), connectTimeoutMs: cfg.connectTimeoutMs,
  }, extra || {}));
}
function connectOne(i, extra) {
  return new Promise((resolve) => {
    const c = makeClient(i, extra);
    c.connect((err, ms) => resolve({ client: c, err, ms }));
  });
}
/** Connects n clients with at most `concurrency` handshakes in flight. */
async function connectPool(n, concurrency, extraFor) {
  const clients = new Array(n);
  const failures = newFailures();
  const lat = new Samples();
  let next = 0;
  async function worker() {
    while (next < n) {
      const i = next++;
      const r = await connectOne(i, extraFor ? extraFor(i) : undefined);
      if (r.err) countFailure(failures, r.err); else { clients[i] = r.client; lat.push(r.ms); }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  return { clients: clients.filter(Boolean), failures, latency_ms: lat.summary() };
}
async function closeAll(clients) {
  for (const c of clients) c.disconnect();
  const deadline = nowMs() + 5000;
  while (nowMs() < deadline && clients.some((c) => !c.closed)) await sleep(20);
  for (const c of clients) if (!c.closed) c.terminate();
}
function payloadOf(bytes) { return 'x'.repeat(Math.max(0, bytes)); }

// ---- scenarios ----------------------------------------------------------------------------
async function scenarioA() {
  const setup = await connectPool(cfg.clients, cfg.setupConcurrency);
  const clients = setup.clients;
  if (!clients.length) return { error: `no client connected: ${JSON.stringify(setup.failures)}` };
  const payload = payloadOf(cfg.payloadBytes);
  const lat = new Samples();
  let recording = false; let running = true; let acked = 0; let sent = 0; let outstanding = 0;
  let tStart = 0; let tEnd = 0;
  const loop = (c) => {
    const t0 = nowMs();
    sent++; outstanding++;
    c.emit('echo', payload, () => {
      const t1 = nowMs();
      outstanding--;
      if (recording && t1 <= tEnd) { lat.push(t1 - t0); acked++; }
      if (running && !c.closed) loop(c);
    });
  };
  for (const c of clients) loop(c);
  await sleep(cfg.warmupS * 1000);
  const cpu = new CpuWindow();
  await mark('window_start', false);
  cpu.start();
  tStart = nowMs(); tEnd = tStart + cfg.durationS * 1000; recording = true;
  await sleep(cfg.durationS * 1000);
  const cpuw = cpu.stop();
  await mark('window_end', false);
  running = false;
  const drainDeadline = nowMs() + cfg.ackTimeoutMs;
  while (outstanding > 0 && nowMs() < drainDeadline) await sleep(10);
  const window = (Math.min(nowMs(), tEnd) - tStart) / 1000;
  await closeAll(clients);
  const l = lat.summary();
  if (!acked) return { error: `no echo acknowledged by ${clients.length} connected clients (does the target answer "echo"?)`, detail: { sent_total: sent } };
  return {
    figures: { msgs_per_s: acked / window, p50_ms: l.p50, p99_ms: l.p99, max_ms: l.max },
    detail: { clients: clients.length, acked_in_window: acked, sent_total: sent, unacked_at_end: outstanding, window_s: window, setup_failures: setup.failures },
    loadgen_cpu: cpuw,
  };
}

async function scenarioB() {
  const setup = await connectPool(cfg.clients, cfg.setupConcurrency);
  const clients = setup.clients;
  if (!clients.length) return { error: `no client connected: ${JSON.stringify(setup.failures)}` };
  const n = clients.length;
  const payload = payloadOf(cfg.payloadBytes);
  const lat = new Samples();
  const totalRate = n * cfg.ratePerClient; // messages per second, all clients
  let sentRec = 0; let ackedRec = 0; let outstandingRec = 0; let seq = 0;
  let recording = false;
  const t0 = nowMs();
  const warmEnd = t0 + cfg.warmupS * 1000;
  const end = warmEnd + cfg.durationS * 1000;
  const cpu = new CpuWindow();
  await new Promise((resolve) => {
    const tick = () => {
      const now = nowMs();
      if (!recording && now >= warmEnd) { recording = true; cpu.start(); mark('window_start', false); }
      const due = Math.floor(((Math.min(now, end) - t0) / 1000) * totalRate);
      while (seq < due) {
        const c = clients[seq % n];
        seq++;
        if (c.closed) continue;
        const rec = recording;
        const ts = nowMs();
        if (rec) { sentRec++; outstandingRec++; }
        c.emit('echo', payload, () => {
          if (rec) { lat.push(nowMs() - ts); ackedRec++; outstandingRec--; }
        });
      }
      if (now >= end) { clearInterval(timer); resolve(); }
    };
    const timer = setInterval(tick, 2);
  });
  const cpuw = cpu.stop();
  await mark('window_end', false);
  const drainDeadline = nowMs() + cfg.ackTimeoutMs;
  while (outstandingRec > 0 && nowMs() < drainDeadline) await sleep(10);
  await closeAll(clients);
  const l = lat.summary();
  if (!ackedRec) return { error: `no echo acknowledged out of ${sentRec} sent (does the target answer "echo"?)` };
  return {
    figures: { p50_ms: l.p50, p99_ms: l.p99, max_ms: l.max, lost: outstandingRec },
    detail: { clients: n, target_rate_per_s: totalRate, achieved_rate_per_s: ackedRec / cfg.durationS, sent: sentRec, acked: ackedRec, lost_after_ms: cfg.ackTimeoutMs, setup_failures: setup.failures },
    loadgen_cpu: cpuw,
  };
}

async function scenarioC() {
  // Warm the server's lazy paths (imports, first websocket) before the "before" RSS sample.
  const warm = await connectPool(3, 3);
  await closeAll(warm.clients);
  await sleep(300);
  await mark('rss_before', true);
  const n = cfg.connections;
  const clients = [];
  const failures = newFailures();
  const lat = new Samples();
  let started = 0; let settled = 0;
  const cpu = new CpuWindow();
  cpu.start();
  const t0 = nowMs();
  await new Promise((resolve) => {
    const launch = () => {
      const due = Math.min(n, Math.floor(((nowMs() - t0) / 1000) * cfg.rampPerS) + 1);
      while (started < due) {
        const i = started++;
        const c = makeClient(i);
        c.connect((err, ms) => {
          settled++;
          if (err) countFailure(failures, err); else { clients.push(c); lat.push(ms); }
          if (settled === n) resolve();
        });
      }
      if (started >= n) clearInterval(timer);
    };
    const timer = setInterval(launch, 5);
    launch();
  });
  const rampS = (nowMs() - t0) / 1000;
  const cpuw = cpu.stop();
  await sleep(cfg.holdS * 1000);
  const stillOpen = clients.filter((c) => c.connected).length;
  await mark('rss_after', true, { open: stillOpen });
  await closeAll(clients);
  const l = lat.summary();
  const failed = n - clients.length;
  if (!clients.length) return { error: `no connection out of ${n} succeeded: ${JSON.stringify(failures)}` };
  return {
    figures: { connected: clients.length, connect_p50_ms: l.p50, connect_p99_ms: l.p99, connect_max_ms: l.max, refused: failures.refused, timeouts: failures.timeout, other_failures: failed - failures.refused - failures.timeout },
    detail: { attempted: n, ramp_per_s: cfg.rampPerS, ramp_s: rampS, open_after_hold: stillOpen, hold_s: cfg.holdS, failures },
    loadgen_cpu: cpuw,
  };
}

async function scenarioD() {
  const lat = new Samples();
  const failures = newFailures();
  let completed = 0; let completedRec = 0; let recording = false; let running = true; let idx = 0;
  const closing = new Set();
  const t0 = nowMs();
  const warmEnd = t0 + cfg.warmupS * 1000;
  const end = warmEnd + cfg.durationS * 1000;
  const cpu = new CpuWindow();
  async function worker() {
    while (running) {
      const r = await connectOne(idx++);
      const t = nowMs();
      if (r.err) { if (recording && t <= end) countFailure(failures, r.err); continue; }
      completed++;
      if (recording && t <= end) { completedRec++; lat.push(r.ms); }
      // free the handshake slot at once; the close runs in the background
      const c = r.client;
      closing.add(c);
      c.onClose = () => closing.delete(c);
      c.disconnect();
    }
  }
  const workers = Array.from({ length: cfg.inFlight }, worker);
  await sleep(cfg.warmupS * 1000);
  recording = true; cpu.start(); await mark('window_start', false);
  await sleep(Math.max(0, end - nowMs()));
  const cpuw = cpu.stop();
  await mark('window_end', false);
  running = false;
  await Promise.all(workers);
  const deadline = nowMs() + 5000;
  while (closing.size && nowMs() < deadline) await sleep(20);
  for (const c of closing) c.terminate();
  const l = lat.summary();
  if (!completedRec) return { error: `no connect completed: ${JSON.stringify(failures)}` };
  return {
    figures: { connects_per_s: completedRec / cfg.durationS, connect_p50_ms: l.p50, connect_p99_ms: l.p99, failures: Object.keys(failures).filter((k) => k !== 'examples').reduce((s, k) => s + failures[k], 0) },
    detail: { in_flight: cfg.inFlight, completed_total: completed, completed_in_window: completedRec, failures },
    loadgen_cpu: cpuw,
  };
}

async function scenarioE() {
  let currentSeq = -1; let got = 0; let firstAt = 0; let lastAt = 0; let roundDone = null; let target = 0;
  const onRawEvent = (s, i) => {
    // 42["tick",{"seq":N}] - match the seq without a full parse
    if (s.startsWith('["tick"', i)) {
      const k = s.indexOf('"seq":', i);
      const seq = k < 0 ? NaN : parseInt(s.slice(k + 6), 10);
      if (seq === currentSeq) {
        const t = nowMs();
        if (got === 0) firstAt = t;
        got++; lastAt = t;
        if (got === target && roundDone) roundDone();
      }
      return true;
    }
    return false;
  };
  const setup = await connectPool(cfg.clients, cfg.setupConcurrency, () => ({ onRawEvent }));
  const clients = setup.clients;
  if (!clients.length) return { error: `no client connected: ${JSON.stringify(setup.failures)}` };
  target = clients.length;
  const sender = clients[0];
  const last = []; const first = []; let incomplete = 0; let missing = 0;
  const cpu = new CpuWindow();
  await sleep(200);
  for (let r = 0; r < cfg.warmupRounds + cfg.rounds; r++) {
    const recording = r >= cfg.warmupRounds;
    if (r === cfg.warmupRounds) { cpu.start(); await mark('window_start', false); }
    currentSeq = r; got = 0; firstAt = 0; lastAt = 0;
    const t0 = nowMs();
    const done = new Promise((resolve) => {
      roundDone = resolve;
      setTimeout(resolve, cfg.roundTimeoutMs);
    });
    sender.emit('fanout', { seq: r }, () => {});
    await done;
    roundDone = null;
    if (recording) {
      if (got < target) { incomplete++; missing += target - got; }
      if (got > 0) { last.push(lastAt - t0); first.push(firstAt - t0); }
    }
    await sleep(cfg.roundGapMs);
  }
  const cpuw = cpu.stop();
  await mark('window_end', false);
  await closeAll(clients);
  const l = summarize(last); const f = summarize(first);
  if (!last.length) return { error: 'no client received a tick (does the target answer "fanout" and emit "tick" to the room?)' };
  return {
    figures: { last_receipt_p50_ms: l.p50, last_receipt_max_ms: l.max, first_receipt_p50_ms: f.p50, incomplete_rounds: incomplete },
    detail: { clients: target, rounds: cfg.rounds, missing_receipts: missing, setup_failures: setup.failures },
    loadgen_cpu: cpuw,
  };
}

// ---- victim load + attackers (f, g) and the soak (s) ----------------------------------------
function victimAddress(i) { return `127.0.1.${1 + Math.floor(i / cfg.victimPerAddress)}`; }

/** Open-loop echo load on `clients` at `rate` msg/s each; latencies go to `sink()` at send time. */
function openLoop(clients, rate) {
  const n = clients.length;
  const st = { sink: null, sent: 0, acked: 0, outstanding: 0, lost: 0, stop: null };
  const payload = payloadOf(cfg.payloadBytes);
  const t0 = nowMs(); let seq = 0;
  const timer = setInterval(() => {
    const due = Math.floor(((nowMs() - t0) / 1000) * n * rate);
    while (seq < due) {
      const c = clients[seq % n];
      seq++;
      if (c.closed) continue;
      const sink = st.sink; const ts = nowMs();
      st.sent++; st.outstanding++;
      c.emit('echo', payload, () => { st.outstanding--; st.acked++; if (sink) sink.push(nowMs() - ts); });
    }
  }, 2);
  st.stop = () => clearInterval(timer);
  return st;
}

async function phases(names, run) {
  // run(name) starts the phase's attackers and returns a stop function (or null)
  const out = {};
  for (const name of names) {
    const lat = new Samples(); const cpu = new CpuWindow();
    const stop = await run(name, lat);
    await sleep(1000); // settle
    run.victim.sink = lat;
    cpu.start(); await mark(`phase_start:${name}`, false);
    const counters0 = run.counters ? JSON.parse(JSON.stringify(run.counters)) : null;
    await sleep(cfg.phaseS * 1000);
    await mark(`phase_end:${name}`, false, { counters: run.counters, counters0 });
    run.victim.sink = null;
    const cpuw = cpu.stop();
    if (stop) await stop();
    const l = lat.summary();
    out[name] = { p50_ms: l.p50, p99_ms: l.p99, max_ms: l.max, acks: l.n, loadgen_cpu: cpuw };
    await sleep(1000);
  }
  return out;
}

// The attackers run in a child process (same CPU): their work (handshakes, 10 MiB frames) must
// not block the event loop that timestamps the victim's acks.
function attacker(extra, counters) {
  const { fork } = require('child_process');
  const child = fork(__filename, [JSON.stringify(Object.assign({}, cfg, extra, { scenario: 'attacker' }))], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  child.on('message', (m) => { if (m && m.counters) Object.assign(counters, m.counters); });
  return Promise.resolve(async () => {
    await new Promise((resolve) => { child.once('exit', resolve); child.send('stop'); setTimeout(() => child.kill(), 10000); });
  });
}

async function attackerMain() {
  let running = true;
  const counters = cfg.attack === 'flood'
    ? { attempts: 0, refused_http: 0, refused_reset: 0, accepted: 0, other: 0, status: {} }
    : { frames: 0, closed: 0, errors: 0, open_failures: 0 };
  const report = () => process.send({ counters });
  const reporter = setInterval(report, 100);
  let loops = [];
  if (cfg.attack === 'flood') {
    let inFlight = 0; const t0 = nowMs(); let started = 0;
    const timer = setInterval(() => {
      const due = Math.floor(((nowMs() - t0) / 1000) * cfg.floodPerS);
      while (running && started < due && inFlight < cfg.floodMaxInFlight) {
        started++; inFlight++; counters.attempts++;
        const c = makeClient(started, { localAddress: cfg.floodAddress, auth: null });
        c.connect((err) => {
          inFlight--;
          if (!err) { counters.accepted++; c.terminate(); return; }
          if (err.kind === 'http') { counters.refused_http++; counters.status[err.detail] = (counters.status[err.detail] || 0) + 1; }
          else if (err.kind === 'reset' || err.kind === 'closed') counters.refused_reset++;
          else counters.other++;
        });
      }
      if (started < due) started = due; // over the in-flight cap: skipped, not queued
    }, 2);
    loops.push((async () => { while (running) await sleep(50); clearInterval(timer); const d = nowMs() + 5000; while (inFlight > 0 && nowMs() < d) await sleep(20); })());
  } else {
    const WebSocket = require('ws');
    // one text frame, built once; a zero mask key lets ws send the buffer as it is (no copy,
    // no XOR): the attacker's CPU goes to the socket, not to masking
    const frame = Buffer.from('42["echo","' + 'x'.repeat(Math.max(0, cfg.frameBytes - 12)) + '"]');
    const url = `ws://${cfg.host}:${cfg.port}${cfg.path}?EIO=4&transport=websocket`;
    for (let k = 0; k < cfg.senders; k++) {
      const addr = `127.0.0.${3 + k}`;
      loops.push((async () => {
        while (running) {
          const t = nowMs();
          await new Promise((resolve) => {
            const ws = new WebSocket(url, { perMessageDeflate: false, localAddress: addr, generateMask: (m) => m.fill(0) });
            let sent = false;
            const to = setTimeout(() => { ws.terminate(); resolve(); }, 5000);
            ws.on('message', (d) => {
              if (!sent && String(d).charCodeAt(0) === 48) { sent = true; counters.frames++; ws.send(frame, { binary: false }, () => {}); }
            });
            ws.on('unexpected-response', (req) => { counters.open_failures++; req.destroy(); clearTimeout(to); resolve(); });
            ws.on('error', () => { counters.errors++; });
            ws.on('close', () => { counters.closed++; clearTimeout(to); resolve(); });
          });
          const wait = 1000 / cfg.framesPerSPerSender - (nowMs() - t);
          if (wait > 0) await sleep(wait);
        }
      })());
    }
  }
  process.on('message', async (m) => {
    if (m !== 'stop') return;
    running = false;
    await Promise.all(loops);
    clearInterval(reporter);
    report();
    process.exit(0);
  });
}

async function scenarioF() {
  const setup = await connectPool(cfg.victimClients, cfg.setupConcurrency, (i) => ({ localAddress: victimAddress(i) }));
  const clients = setup.clients;
  if (clients.length < cfg.victimClients) return { error: `victim: ${clients.length} of ${cfg.victimClients} connected: ${JSON.stringify(setup.failures)}` };
  const victim = openLoop(clients, cfg.victimRate);
  const counters = { attempts: 0, refused_http: 0, refused_reset: 0, accepted: 0, other: 0, status: {} };
  const run = async (name) => (name === 'flood' ? attacker({ attack: 'flood' }, counters) : null);
  run.victim = victim; run.counters = counters;
  const res = await phases(['quiet', 'flood'], run);
  victim.stop();
  await sleep(500);
  await closeAll(clients);
  return {
    figures: {
      quiet_p50_ms: res.quiet.p50_ms, quiet_p99_ms: res.quiet.p99_ms,
      flood_p50_ms: res.flood.p50_ms, flood_p99_ms: res.flood.p99_ms, flood_max_ms: res.flood.max_ms,
      victim_lost: victim.outstanding,
    },
    detail: { phases: res, flood: counters, victim_sent: victim.sent, victim_acked: victim.acked, setup_failures: setup.failures },
    loadgen_cpu: res.flood.loadgen_cpu,
  };
}

async function scenarioG() {
  const setup = await connectPool(cfg.victimClients, cfg.setupConcurrency, (i) => ({ localAddress: victimAddress(i) }));
  const clients = setup.clients;
  if (clients.length < cfg.victimClients) return { error: `victim: ${clients.length} of ${cfg.victimClients} connected: ${JSON.stringify(setup.failures)}` };
  const victim = openLoop(clients, cfg.victimRate);
  const counters = { frames: 0, closed: 0, errors: 0, open_failures: 0 };
  const frames = {};
  for (const b of cfg.frameBytes) frames[`frames_${b}`] = b;
  const run = async (name) => (frames[name] ? attacker({ attack: 'frames', frameBytes: frames[name] }, counters) : null);
  run.victim = victim; run.counters = counters;
  const names = ['quiet', ...Object.keys(frames)];
  const res = await phases(names, run);
  victim.stop();
  await sleep(500);
  await closeAll(clients);
  const figures = { quiet_p50_ms: res.quiet.p50_ms, quiet_p99_ms: res.quiet.p99_ms };
  for (const name of Object.keys(frames)) {
    const mb = Math.round(Number(name.split('_')[1]) / 1048576);
    figures[`${mb}MiB_p50_ms`] = res[name].p50_ms;
    figures[`${mb}MiB_p99_ms`] = res[name].p99_ms;
  }
  figures.victim_lost = victim.outstanding;
  return { figures, detail: { phases: res, senders: counters, victim_sent: victim.sent, victim_acked: victim.acked }, loadgen_cpu: res[names[names.length - 1]].loadgen_cpu };
}

async function scenarioS() {
  // soak: steadyClients at ratePerClient msg/s, plus churnPerS connections opened and closed
  await mark('soak_baseline', true);
  const setup = await connectPool(cfg.steadyClients, cfg.setupConcurrency);
  const clients = setup.clients;
  if (!clients.length) return { error: `no client connected: ${JSON.stringify(setup.failures)}` };
  await mark('soak_start', true, { open: clients.length });
  const victim = openLoop(clients, cfg.ratePerClient);
  const lat = new Samples(); victim.sink = lat;
  const churnFailures = newFailures(); let churned = 0; let idx = cfg.steadyClients; const churning = new Set();
  const t0 = nowMs();
  const churnTimer = setInterval(() => {
    const due = Math.floor(((nowMs() - t0) / 1000) * cfg.churnPerS);
    while (churned < due) {
      churned++;
      const c = makeClient(idx++);
      churning.add(c);
      c.connect((err) => {
        if (err) { countFailure(churnFailures, err); churning.delete(c); return; }
        setTimeout(() => { c.disconnect(); churning.delete(c); }, cfg.churnHoldMs);
      });
    }
  }, 5);
  const curve = [];
  const cpu = new CpuWindow(); cpu.start();
  const end = t0 + cfg.durationS * 1000;
  let next = t0 + cfg.sampleEveryS * 1000; let first = true;
  while (nowMs() < end) {
    await sleep(Math.max(0, Math.min(next, end) - nowMs()));
    const tS = Math.round((nowMs() - t0) / 1000);
    const s = lat.summary();
    await mark(`soak_sample`, true, { t_s: tS, open: clients.filter((c) => c.connected).length, p99_ms: s.p99 });
    curve.push({ t_s: tS, p50_ms: s.p50, p99_ms: s.p99, max_ms: s.max, acks: s.n });
    lat.n = 0;
    if (first) { first = false; await mark('soak_first_minute', false); }
    next += cfg.sampleEveryS * 1000;
  }
  clearInterval(churnTimer);
  const cpuw = cpu.stop();
  await mark('soak_end', true, { open: clients.filter((c) => c.connected).length });
  victim.stop();
  await sleep(cfg.ackTimeoutMs);
  const lost = victim.outstanding;
  await closeAll(clients);
  for (const c of churning) c.terminate();
  await sleep(cfg.leaveWaitS * 1000);
  await mark('soak_after_leave', true, { open: 0 });
  const failed = Object.keys(churnFailures).filter((k) => k !== 'examples').reduce((a, k) => a + churnFailures[k], 0);
  const p99s = curve.map((c) => c.p99_ms).filter((v) => v !== null);
  return {
    figures: { churn_failures: failed, lost, worst_interval_p99_ms: p99s.length ? Math.max(...p99s) : null },
    detail: { curve, churned, churn_failures: churnFailures, sent: victim.sent, acked: victim.acked, setup_failures: setup.failures },
    loadgen_cpu: cpuw,
  };
}

const SCENARIOS = { a: scenarioA, b: scenarioB, c: scenarioC, d: scenarioD, e: scenarioE, f: scenarioF, g: scenarioG, s: scenarioS };

(async () => {
  if (cfg.scenario === 'attacker') { await attackerMain(); return; }
  const fn = SCENARIOS[cfg.scenario];
  if (!fn) { log('unknown scenario', cfg.scenario); process.exit(2); }
  const c0 = process.cpuUsage(); const t0 = nowMs();
  let res;
  try {
    res = await fn();
  } catch (e) {
    res = { error: String(e && e.stack || e) };
  }
  const c = process.cpuUsage(c0); const wall = nowMs() - t0;
  res.loadgen_cpu_total = { cpu_ms: (c.user + c.system) / 1000, wall_ms: wall, cpu_fraction: (c.user + c.system) / 1000 / wall };
  res.type = 'result';
  res.scenario = cfg.scenario;
  out(res);
  rl.close();
  process.exit(0);
})();
