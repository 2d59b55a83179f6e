// Preloaded with `node --require` by everything.sh, for server-everything,
// which calls `app.listen(PORT)` with no host (binds every interface, `::`)
// and, given PORT=0, logs "port 0" instead of the port it got. This shim:
//  1. makes any listen() whose first argument is a port, and which names no
//     host, bind 127.0.0.1 instead, so the peer is only reachable on loopback;
//  2. once that server listens, prints "READY http://127.0.0.1:<port><path>"
//     on stdout (path from $SLUICE_READY_PATH, e.g. /mcp or /sse), the line
//     the Rust tests wait for, with the real port when PORT=0.
"use strict";
const net = require("node:net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const isPort = typeof args[0] === "number" ||
    (typeof args[0] === "string" && /^\d+$/.test(args[0]));
  if (isPort && typeof args[1] !== "string") {
    args[0] = Number(args[0]);
    args.splice(1, 0, "127.0.0.1");
    this.once("listening", () => {
      const path = process.env.SLUICE_READY_PATH ?? "";
      process.stdout.write(`READY http://127.0.0.1:${this.address().port}${path}\n`);
    });
  }
  return listen.apply(this, args);
};
