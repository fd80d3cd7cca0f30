// One official socket.io-client session that lives through a node's drain: it prints every
// event, the disconnect reason, and exits after it has reconnected. Used by
// tests/integration/test_drain.py.
//
// argv[2]: {url, transports}
// output:  {"type":"connect", n} | {"type":"event", event, args} | {"type":"disconnect", reason}
import { io } from "socket.io-client";

const { url, transports } = JSON.parse(process.argv[2]);
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");

const socket = io(url, {
  forceNew: true,
  transports,
  reconnectionDelay: 100,
  reconnectionDelayMax: 300,
  randomizationFactor: 0,
});
let connects = 0;
socket.on("connect", () => {
  connects += 1;
  print({ type: "connect", n: connects });
  if (connects === 2) {
    socket.disconnect();
    process.exit(0);
  }
});
socket.onAny((event, ...args) => print({ type: "event", event, args }));
socket.on("disconnect", (reason) => print({ type: "disconnect", reason }));
setTimeout(() => { print({ type: "timeout" }); process.exit(1); }, 20000);
