// The Node.js reference for bench/chat_fanout.py: a small broadcast server on npm's socket.io 4.8,
// speaking the same events as Homeroom so that the same client drives both.
//
// - connect with auth {token}: the token is "<user id>|<stream>,<stream>,..." (trusted as is);
// - "sync" (ack): join the rooms "<stream>#m" of the token's streams;
// - "chat.send" {stream, client_id, body} (ack {ok, message}): broadcast "event"
//   {stream, seq, type: "chat.message", at, data: message} to the stream's rooms;
// - "notice.publish" {class_id, audience, title, ...} (ack {ok, notice, recipients}): broadcast
//   "event" {type: "notice.published"} to "notices:<class>:<audience>".
// Nothing is stored: this is the cost of fan-out alone. Default socket.io options (as deployed by
// most), WebSocket transport only, bound to 127.0.0.1.
"use strict";

const http = require("http");
const { Server } = require("socket.io");

const port = parseInt(process.argv[2] || process.env.PORT || "0", 10);
const httpServer = http.createServer();
const io = new Server(httpServer, { transports: ["websocket"], serveClient: false });

const seqs = new Map();
let nextId = 1;

function nextSeq(stream) {
  const seq = (seqs.get(stream) || 0) + 1;
  seqs.set(stream, seq);
  return seq;
}

function refuse(ack, code, message) {
  if (typeof ack === "function") ack({ ok: false, error: { code, message } });
}

io.use((socket, next) => {
  const token = socket.handshake.auth && socket.handshake.auth.token;
  if (typeof token !== "string" || !token.includes("|")) {
    return next(new Error("unauthorized"));
  }
  const [uid, streams] = token.split("|", 2);
  socket.data.userId = parseInt(uid, 10);
  socket.data.streams = new Set(streams ? streams.split(",") : []);
  next();
});

io.on("connection", (socket) => {
  socket.join(`user:${socket.data.userId}#m`);

  socket.on("sync", (_payload, ack) => {
    const out = [];
    for (const s of socket.data.streams) {
      socket.join(`${s}#m`);
      out.push({ stream: s, visibility: "member", last_seq: seqs.get(s) || 0 });
    }
    if (typeof ack === "function") ack({ ok: true, streams: out, events: [], more: [] });
  });

  socket.on("chat.send", (req, ack) => {
    if (!req || typeof req.stream !== "string" || typeof req.body !== "string") {
      return refuse(ack, "bad_request", "invalid payload");
    }
    if (!socket.data.streams.has(req.stream)) {
      return refuse(ack, "forbidden", "you are not a member of this stream");
    }
    const now = Date.now() / 1000;
    const seq = nextSeq(req.stream);
    const message = {
      id: nextId++,
      stream: req.stream,
      seq,
      sender_id: socket.data.userId,
      sender_name: `user ${socket.data.userId}`,
      client_id: req.client_id,
      body: req.body,
      sent_at: now,
      edited_at: null,
      deleted: false,
    };
    io.to([`${req.stream}#m`, `${req.stream}#s`]).emit("event", {
      stream: req.stream,
      seq,
      type: "chat.message",
      at: now,
      data: message,
    });
    if (typeof ack === "function") ack({ ok: true, message });
  });

  socket.on("notice.publish", (req, ack) => {
    if (!req || typeof req.title !== "string") return refuse(ack, "bad_request", "invalid payload");
    const now = Date.now() / 1000;
    const stream = `notices:${req.class_id}:${req.audience}`;
    const room = `${stream}#m`;
    const notice = {
      id: nextId++,
      class_id: req.class_id,
      author_id: socket.data.userId,
      author_name: `user ${socket.data.userId}`,
      audience: req.audience,
      kind: req.kind,
      title: req.title,
      body: req.body || "",
      choices: req.choices || [],
      deadline: req.deadline || null,
      created_at: now,
    };
    const seq = nextSeq(stream);
    io.to(room).emit("event", { stream, seq, type: "notice.published", at: now, data: notice });
    const recipients = io.sockets.adapter.rooms.get(room);
    if (typeof ack === "function") {
      ack({ ok: true, notice, recipients: recipients ? recipients.size : 0 });
    }
  });
});

httpServer.listen(port, "127.0.0.1", () => {
  console.log(`reference socket.io server on 127.0.0.1:${httpServer.address().port}`);
});

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    io.close();
    process.exit(0);
  });
}
