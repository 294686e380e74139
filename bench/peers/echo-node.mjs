// A Node `ws` echo server, a peer for the benchmark: prints
// "listening on ADDRESS" once it listens on a free port of 127.0.0.1.
// PEER_DEFLATE=1 turns permessage-deflate on (ws compresses messages of
// 1 KiB or more, its default threshold).
import { WebSocketServer } from "ws";

const server = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: process.env.PEER_DEFLATE === "1" });
server.on("connection", (socket) => {
  socket.on("message", (data, isBinary) => socket.send(data, { binary: isBinary }));
});
server.on("listening", () => {
  const { address, port } = server.address();
  console.log(`listening on ${address}:${port}`);
});
