// A Bun pub/sub server (uWebSockets topics inside), the fan-out peer for the
// benchmark, with wsplug's contract: a WebSocket to /feed?topic=NAME is
// subscribed to topic "feed:NAME"; POST /topics/TOPIC publishes its body
// there and answers 202 {"reached": N}. Prints "listening on ADDRESS" once
// it listens on a free port of 127.0.0.1.
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(request, server) {
    const url = new URL(request.url);
    const topic = url.searchParams.get("topic");
    if (url.pathname === "/feed" && topic !== null) {
      return server.upgrade(request, { data: { topic: "feed:" + topic } })
        ? undefined
        : new Response("Not a valid websocket request!", { status: 400 });
    }
    if (request.method === "POST" && url.pathname.startsWith("/topics/")) {
      const name = decodeURIComponent(url.pathname.slice("/topics/".length));
      server.publish(name, await request.text());
      return Response.json({ reached: server.subscriberCount(name) }, { status: 202 });
    }
    return new Response("Not found", { status: 404 });
  },
  websocket: {
    perMessageDeflate: false,
    open(socket) {
      socket.subscribe(socket.data.topic);
    },
    message() {},
  },
});
console.log(`listening on ${server.hostname}:${server.port}`);
