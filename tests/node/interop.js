// Drive a Homeroom server with the Node.js reference socket.io-client.
//
// Usage: node interop.js '<json options>'
//   {url, token, stream, body, expect_body, transport: "websocket"|"polling",
//    parser: "json"|"msgpack", mode: "chat"|"refused"}
//
// Prints one JSON object per line on stdout, each with a "step":
//   connected -> synced (the Python side may now send expect_body) -> received -> sent -> done
// or, in "refused" mode: refused (with the connect_error's message and data).
// Exits non-zero on any failure, after printing {"step": "error", ...}.
"use strict";

const { io } = require("socket.io-client");

const opts = JSON.parse(process.argv[2]);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const fail = (message) => {
  out({ step: "error", message: String(message) });
  process.exit(1);
};
setTimeout(() => fail("timed out"), opts.timeout_ms || 15000).unref();

const socketOpts = {
  auth: { token: opts.token },
  transports: [opts.transport || "websocket"],
  upgrade: false,
  reconnection: false,
  forceNew: true,
};
if (opts.parser === "msgpack") {
  socketOpts.parser = require("socket.io-msgpack-parser");
}

const socket = io(opts.url, socketOpts);

socket.on("connect_error", (err) => {
  if (opts.mode === "refused") {
    out({ step: "refused", message: err.message, data: err.data === undefined ? null : err.data });
    socket.close();
    process.exit(0);
  }
  fail("connect_error: " + err.message);
});

async function main() {
  out({ step: "connected", transport: socket.io.engine.transport.name });
  if (opts.mode === "refused") fail("connected with a token that should be refused");

  const received = new Promise((resolve) => {
    socket.on("event", (ev) => {
      if (ev.stream === opts.stream && ev.type === "chat.message" && ev.data.body === opts.expect_body) {
        resolve(ev);
      }
    });
  });

  const sync = await socket.timeout(10000).emitWithAck("sync", { cursors: {} });
  if (!sync.ok) fail("sync refused: " + JSON.stringify(sync.error));
  out({ step: "synced", streams: sync.streams.map((s) => s.stream) });

  const ev = await received;
  out({ step: "received", event: ev });

  const ack = await socket.timeout(10000).emitWithAck("chat.send", {
    stream: opts.stream,
    client_id: "node-" + process.pid + "-" + Date.now(),
    body: opts.body,
  });
  out({ step: "sent", ack });

  // An error answer is an ordinary ack too, with a stable code.
  const refused = await socket.timeout(10000).emitWithAck("chat.send", {
    stream: opts.stream,
    client_id: "",
    body: "x",
  });
  out({ step: "bad_request", ack: refused, transport: socket.io.engine.transport.name });

  socket.close();
  out({ step: "done" });
  process.exit(0);
}

socket.on("connect", () => {
  main().catch(fail);
});
