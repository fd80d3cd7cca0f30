// One official socket.io-client session, driven by a JSON scenario (argv[2]); prints one JSON
// line per thing the client observes. Used by tests/integration/test_js_client.py.
//
// scenario: {url, namespace?, options?, steps?: [{emit, args?, ack?}], await_disconnect?,
//            timeout_ms?, print_events?}
// output:   {"type":"connect"} | {"type":"connect_error", message, data, description, body}
//           | {"type":"ack", event, args} | {"type":"error", args} | {"type":"disconnect", reason}
//           | {"type":"event", event, args} (with print_events: any other server event)
//           | {"type":"done"}
import { io } from "socket.io-client";

const scenario = JSON.parse(process.argv[2]);
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");
const TIMEOUT_MS = 5000;
const DISCONNECT_WAIT_MS = scenario.timeout_ms ?? TIMEOUT_MS;

const socket = io(scenario.url + (scenario.namespace ?? "/"), {
  reconnection: false,
  forceNew: true,
  timeout: TIMEOUT_MS,
  ...(scenario.options ?? {}),
});

// `error` events (refusals of events sent without an ack), in order of arrival
const errors = [];
const waiting = [];
socket.on("error", (...args) => {
  print({ type: "error", args });
  const resolve = waiting.shift();
  if (resolve) resolve(args);
  else errors.push(args);
});
const nextError = () => errors.length > 0
  ? Promise.resolve(errors.shift())
  : new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no error event")), TIMEOUT_MS);
    waiting.push((args) => { clearTimeout(timer); resolve(args); });
  });
if (scenario.print_events) {
  socket.onAny((event, ...args) => {
    if (event !== "error") print({ type: "event", event, args });
  });
}
socket.on("disconnect", (reason) => {
  print({ type: "disconnect", reason });
  process.exit(0);
});

socket.on("connect_error", (err) => {
  // a refused CONNECT: err.message and err.data, as Node's next(err) with err.data sends them;
  // a refused handshake (no session yet): a transport error with the HTTP status and body
  const body = err.context && typeof err.context.responseText === "string"
    ? err.context.responseText : null;
  print({
    type: "connect_error",
    message: err.message,
    data: err.data ?? null,
    description: typeof err.description === "number" ? err.description : null,
    body,
  });
  process.exit(0);
});

socket.on("connect", async () => {
  print({ type: "connect" });
  for (const step of scenario.steps ?? []) {
    const args = step.args ?? [];
    if (step.ack) {
      const answer = await socket.timeout(TIMEOUT_MS).emitWithAck(step.emit, ...args);
      print({ type: "ack", event: step.emit, args: [answer] });
    } else {
      socket.emit(step.emit, ...args);
      await nextError(); // this step expects a refusal: printed by the `error` listener
    }
  }
  if (scenario.await_disconnect) {
    // the server is expected to close the session: the `disconnect` listener exits
    setTimeout(() => { print({ type: "timeout" }); process.exit(1); }, DISCONNECT_WAIT_MS);
    return;
  }
  print({ type: "done" });
  socket.off("disconnect");
  socket.disconnect();
  process.exit(0);
});
