// One long-lived official socket.io-client socket, driven line by line from stdin (JSON
// commands) and reporting on stdout (one JSON line per observation). Used by
// tests/integration/js_session.py.
//
// argv[2]: {url, namespace?, options?}
// commands: {cmd:"connect"} | {cmd:"cut"} (drop the transport, as a network loss would)
//           | {cmd:"emit", event, args?} (with an acknowledgement) | {cmd:"auth", auth}
//           | {cmd:"exit"}
// output:   {type:"connect", id, recovered} | {type:"disconnect", reason}
//           | {type:"connect_error", message, data} | {type:"event", event, args}
//           | {type:"ack", event, args}
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const scenario = JSON.parse(process.argv[2]);
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");

const socket = io(scenario.url + (scenario.namespace ?? "/"), {
  reconnection: false,
  forceNew: true,
  autoConnect: false,
  timeout: 5000,
  ...(scenario.options ?? {}),
});
socket.on("connect", () => print({ type: "connect", id: socket.id, recovered: socket.recovered }));
socket.on("disconnect", (reason) => print({ type: "disconnect", reason }));
socket.on("connect_error", (err) =>
  print({ type: "connect_error", message: err.message, data: err.data ?? null }));
socket.onAny((event, ...args) => print({ type: "event", event, args }));

const commands = createInterface({ input: process.stdin });
commands.on("line", async (line) => {
  const command = JSON.parse(line);
  if (command.cmd === "connect") {
    socket.connect();
  } else if (command.cmd === "cut") {
    socket.io.engine.close();
  } else if (command.cmd === "auth") {
    socket.auth = command.auth;
  } else if (command.cmd === "emit") {
    const answer = await socket.timeout(5000).emitWithAck(command.event, ...(command.args ?? []));
    print({ type: "ack", event: command.event, args: [answer] });
  } else if (command.cmd === "exit") {
    socket.disconnect();
    process.exit(0);
  }
});
commands.on("close", () => process.exit(0));
