// A Bun echo server (uWebSockets inside), a peer for the benchmark: prints
// "listening on ADDRESS" once it listens on a free port of 127.0.0.1.
// PEER_DEFLATE=1 turns permessage-deflate on.
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch(request, server) {
    return server.upgrade(request) ? undefined : new Response("Not a valid websocket request!", { status: 400 });
  },
  websocket: {
    perMessageDeflate: process.env.PEER_DEFLATE === "1",
    message(socket, message) {
      socket.send(message);
    },
  },
});
console.log(`listening on ${server.hostname}:${server.port}`);
