// engine client helper: the official Socket.IO client, configured by the engine.
//
//   import { connect } from "/engine/client.js";
//   const engine = await connect({ auth: { token }, onStatus: (status, detail) => ... });
//   const stop = await engine.watchTask("export-42", {
//     onProgress: (state) => ...,   // {task_id, status, percent, message, eta_seconds, data}
//     onDone: (state) => ...,       // status completed | failed | cancelled (+ result | error)
//   });
//   await engine.cancelTask("export-42");
//
// - options come from GET /engine/api/client-config (path, transports, backoff): nothing the
//   server decides is hard-coded here;
// - a refused connection is retried only when its code is retryable, after
//   `retry_after_seconds` when the refusal says so; other codes are final (status "refused");
// - `maintenance` and `server_draining` notices are reported through onStatus (the client
//   reconnects by itself once the transport closes);
// - task subscriptions survive reconnects: a recovered session (connection state recovery)
//   gets every missed update replayed by the server; otherwise they are joined again and the
//   latest state is delivered at once.
import { io } from "./socket.io.esm.min.js";

const TERMINAL = new Set(["task_completed", "task_failed", "task_cancelled"]);

export async function connect(options = {}) {
  const base = options.url ?? window.location.origin;
  const response = await fetch(base + "/engine/api/client-config", { credentials: "same-origin" });
  if (!response.ok) throw new Error(`client-config: HTTP ${response.status}`);
  const config = await response.json();
  return new EngineClient(base, config, options);
}

export class EngineClient {
  constructor(base, config, options) {
    this.config = config;
    this.onStatus = options.onStatus ?? (() => {});
    this.tasks = new Map(); // task id -> {onProgress, onDone}
    const namespace = options.namespace ?? config.progress?.namespace ?? "/";
    const backoff = config.reconnection;
    this.socket = io(base + namespace, {
      path: config.path,
      transports: config.transports,
      auth: options.auth,
      reconnectionDelay: backoff.delay_ms,
      reconnectionDelayMax: backoff.delay_max_ms,
      randomizationFactor: backoff.randomization_factor,
    });
    this.socket.on("connect", () => this._connected());
    this.socket.on("disconnect", (reason) => this.onStatus("disconnected", { reason }));
    this.socket.on("connect_error", (err) => this._refused(err));
    this.socket.on("maintenance", (notice) => this.onStatus("maintenance", notice));
    this.socket.on("server_draining", (notice) => this.onStatus("draining", notice));
    for (const event of config.progress?.events ?? []) {
      this.socket.on(event, (state) => this._task(event, state));
    }
  }

  _connected() {
    this.onStatus("connected", { recovered: this.socket.recovered, id: this.socket.id });
    if (!this.socket.recovered) {
      // a fresh session: subscriptions are gone server-side; join again (latest state first)
      for (const taskId of this.tasks.keys()) this._join(taskId).catch(() => {});
    }
  }

  _refused(err) {
    const data = err.data ?? null;
    if (!data || typeof data.code !== "string") {
      this.onStatus("offline", { message: err.message }); // transport: the Manager retries
      return;
    }
    if (!this.config.reconnection.retry_codes.includes(data.code)) {
      this.onStatus("refused", data);
      return;
    }
    const delay = typeof data.retry_after_seconds === "number"
      ? data.retry_after_seconds * 1000 : this.config.reconnection.delay_ms;
    this.onStatus("retrying", { ...data, delay_ms: delay });
    setTimeout(() => this.socket.connect(), delay); // a refused CONNECT is not retried by io()
  }

  _task(event, state) {
    const watcher = state && this.tasks.get(state.task_id);
    if (!watcher) return;
    if (TERMINAL.has(event)) {
      this.tasks.delete(state.task_id);
      watcher.onDone?.(state);
    } else {
      watcher.onProgress?.(state);
    }
  }

  async _join(taskId) {
    const answer = await this.socket.timeout(10000).emitWithAck("join_task", { task_id: taskId });
    if (answer && answer.error) throw Object.assign(new Error(answer.error.message), answer.error);
    return answer.state;
  }

  async watchTask(taskId, callbacks = {}) {
    this.tasks.set(taskId, callbacks);
    try {
      await this._join(taskId);
    } catch (error) {
      this.tasks.delete(taskId);
      throw error;
    }
    return async () => {
      this.tasks.delete(taskId);
      await this.socket.timeout(10000).emitWithAck("leave_task", { task_id: taskId });
    };
  }

  async cancelTask(taskId) {
    const answer = await this.socket.timeout(10000).emitWithAck("cancel_task", { task_id: taskId });
    if (answer && answer.error) throw Object.assign(new Error(answer.error.message), answer.error);
    return answer;
  }

  close() {
    this.socket.disconnect();
  }
}
