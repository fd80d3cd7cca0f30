'use strict';
// Minimal Engine.IO v4 / Socket.IO v5 client over a raw websocket (the `ws` package).
//
// It speaks only what the benchmark needs: websocket transport from the first request
// (no polling, no upgrade), one namespace per connection, text packets, acks.
// The frames it sends are checked byte-for-byte against the official socket.io-client
// by check_protocol.js; keep the two in step when changing anything here.
//
// Engine.IO packet types (first char of a frame): 0 open, 1 close, 2 ping, 3 pong, 4 message, 6 noop.
// Socket.IO packet types (second char of a `4` frame): 0 CONNECT, 1 DISCONNECT, 2 EVENT, 3 ACK,
// 4 CONNECT_ERROR. Non-default namespaces are written `/nsp,` right after the type.

const WebSocket = require('ws');

// The options socket.io-client (engine.io-client 6.x) hands to `ws` in Node.
// perMessageDeflate is offered in the handshake; payloads under `threshold` bytes are sent
// uncompressed, exactly as engine.io-client's WS transport does.
const DEFAULT_WS_OPTIONS = Object.freeze({ perMessageDeflate: { threshold: 1024 } });

class ConnectError extends Error {
  constructor(kind, message, detail) {
    super(message);
    this.kind = kind; // refused | reset | timeout | rejected | http | closed | other
    this.detail = detail;
  }
}

function classifyError(err) {
  const code = err && err.code;
  if (code === 'ECONNREFUSED') return 'refused';
  if (code === 'ECONNRESET' || code === 'EPIPE' || /socket hang up/i.test(String(err && err.message))) return 'reset';
  if (code === 'ETIMEDOUT') return 'timeout';
  return 'other';
}

function buildUrl(host, port, path) {
  let p = path || '/socket.io/';
  if (!p.endsWith('/')) p += '/';
  return `ws://${host}:${port}${p}?EIO=4&transport=websocket`;
}

class SioClient {
  /**
   * @param {object} o
   * @param {string} o.host
   * @param {number} o.port
   * @param {string} [o.path] default /socket.io/
   * @param {string} [o.nsp] default "/"
   * @param {object|null} [o.auth] CONNECT payload, e.g. {token: "..."}; null sends a bare `40`
   * @param {number} [o.connectTimeoutMs]
   * @param {boolean} [o.deflate] offer permessage-deflate like socket.io-client (default true)
   * @param {string} [o.localAddress] source address of the TCP connection (loopback aliases)
   * @param {(name: string, args: any[]) => void} [o.onEvent]
   * @param {(raw: string) => boolean} [o.onRawEvent] fast path: return true if handled
   */
  constructor(o) {
    this.o = o;
    this.nsp = o.nsp || '/';
    this.prefix = this.nsp === '/' ? '' : this.nsp + ',';
    this.ws = null;
    this.sid = null;
    this.eioSid = null;
    this.connected = false;
    this.closed = false;
    this.ackId = 0; // socket.io-client starts at 0
    this.acks = new Map();
    this.onEvent = o.onEvent || null;
    this.onRawEvent = o.onRawEvent || null;
    this.onClose = null;
  }

  /** Opens the websocket and the namespace. cb(err|null, latencyMs) */
  connect(cb) {
    const t0 = process.hrtime.bigint();
    let done = false;
    const finish = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        this.closed = true;
        try { this.ws.terminate(); } catch (_) { /* ignore */ }
        cb(err, 0);
      } else {
        cb(null, Number(process.hrtime.bigint() - t0) / 1e6);
      }
    };
    const timer = setTimeout(() => finish(new ConnectError('timeout', 'connect timeout')),
      this.o.connectTimeoutMs || 10000);
    const wsOpts = this.o.deflate === false ? { perMessageDeflate: false } : { ...DEFAULT_WS_OPTIONS };
    if (this.o.localAddress) wsOpts.localAddress = this.o.localAddress; // e.g. 127.0.0.2: one client IP per attacker
    let ws;
    try {
      ws = new WebSocket(buildUrl(this.o.host, this.o.port, this.o.path), wsOpts);
    } catch (e) {
      finish(new ConnectError(classifyError(e), String(e && e.message), e && e.code));
      return;
    }
    this.ws = ws;
    ws.on('unexpected-response', (req, res) => {
      finish(new ConnectError('http', `HTTP ${res.statusCode}`, res.statusCode));
      req.destroy();
    });
    ws.on('error', (e) => {
      if (!done) finish(new ConnectError(classifyError(e), String(e && e.message), e && e.code));
    });
    ws.on('close', () => {
      this.connected = false;
      this.closed = true;
      if (!done) finish(new ConnectError('closed', 'closed before CONNECT was acknowledged'));
      if (this.onClose) this.onClose();
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const s = data.toString();
      const t = s.charCodeAt(0);
      if (t === 52 /* '4' message */) {
        this._onSio(s, finish);
      } else if (t === 50 /* '2' ping */) {
        this._send('3');
      } else if (t === 48 /* '0' open */) {
        try { this.eioSid = JSON.parse(s.slice(1)).sid; } catch (_) { /* ignore */ }
        this._send('40' + this.prefix + (this.o.auth ? JSON.stringify(this.o.auth) : ''));
      } else if (t === 49 /* '1' close */) {
        ws.close();
      }
    });
  }

  _onSio(s, finish) {
    // s = "4" + sioType + [nsp ","] + [ackId] + [json]
    const type = s.charCodeAt(1);
    let i = 2;
    if (s.charCodeAt(i) === 47 /* '/' */) {
      const comma = s.indexOf(',', i);
      i = comma < 0 ? s.length : comma + 1;
    }
    if (type === 51 /* '3' ACK */) {
      let j = i;
      while (j < s.length) {
        const c = s.charCodeAt(j);
        if (c < 48 || c > 57) break;
        j++;
      }
      const id = +s.slice(i, j);
      const cb = this.acks.get(id);
      if (cb) {
        this.acks.delete(id);
        cb(s, j);
      }
    } else if (type === 50 /* '2' EVENT */) {
      if (this.onRawEvent && this.onRawEvent(s, i)) return;
      if (this.onEvent) {
        let j = i;
        while (j < s.length && s.charCodeAt(j) >= 48 && s.charCodeAt(j) <= 57) j++;
        const arr = JSON.parse(s.slice(j));
        this.onEvent(arr[0], arr.slice(1));
      }
    } else if (type === 48 /* '0' CONNECT */) {
      try { this.sid = JSON.parse(s.slice(i)).sid; } catch (_) { /* ignore */ }
      this.connected = true;
      finish(null);
    } else if (type === 52 /* '4' CONNECT_ERROR */) {
      finish(new ConnectError('rejected', 'CONNECT_ERROR ' + s.slice(i), s.slice(i)));
    } else if (type === 49 /* '1' DISCONNECT */) {
      this.connected = false;
      try { this.ws.close(); } catch (_) { /* ignore */ }
    }
  }

  // engine.io-client's WS transport: never compress frames under the threshold.
  _send(str) {
    const compress = this.o.deflate !== false && Buffer.byteLength(str) >= 1024;
    this.ws.send(str, compress ? {} : { compress: false });
  }

  /** Sends `42[<id>]["event", data]`; onAck(rawFrame, jsonStartIndex) if given. */
  emit(event, data, onAck) {
    if (onAck) {
      const id = this.ackId++;
      this.acks.set(id, onAck);
      this._send('42' + this.prefix + id + JSON.stringify([event, data]));
    } else {
      this._send('42' + this.prefix + JSON.stringify([event, data]));
    }
  }

  /** Socket.IO DISCONNECT for the namespace, then websocket close (what socket.disconnect() does). */
  disconnect() {
    if (this.closed) return;
    try {
      if (this.connected) this._send('41' + this.prefix);
      this.ws.close();
    } catch (_) { /* ignore */ }
    this.connected = false;
  }

  terminate() {
    try { this.ws.terminate(); } catch (_) { /* ignore */ }
    this.connected = false;
    this.closed = true;
  }
}

module.exports = { SioClient, ConnectError, buildUrl, DEFAULT_WS_OPTIONS };
