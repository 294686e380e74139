// A Bun echo server (uWebSockets inside), a peer for the benchmark: prints
// "listening on ADDRESS" once it listens on a free port of 127.0.0.1.
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch(request, server) {
    return server.upgrade(request) ? undefined : new Response("Not a valid websocket request!", { status: 400 });
  },
  websocket: {
    perMessageDeflate: false,
    message(socket, message) {
      socket.send(message);
    },
  },
});
console.log(`listening on ${server.hostname}:${server.port}`);
