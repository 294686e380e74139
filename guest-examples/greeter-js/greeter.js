// The greeter in JavaScript: answers each text message `Peter` with
// `Hello Peter!`, streaming the name back as it arrives. Binary messages are
// ignored. The same behaviour as the Rust greeter (../greeter).
//
// Built with componentize-qjs (QuickJS; it supports component-model async
// exports and streams, which componentize-js/StarlingMonkey does not yet):
// `make greeter-js` installs componentize-qjs 0.4.5 in target/js-tools and runs
//
//   componentize-qjs --wit wit --world flow-handler --js guest-examples/greeter-js/greeter.js \
//       -o target/js/greeter.wasm
//
// The bindings, as componentize-qjs maps the WIT: a `message` is
// `{ tag: "text" | "binary" | "text-stream" | "binary-stream", val }`; a
// received `stream<T>` is an async iterable (`drop()` gives it up); an
// (async) iterable returned or sent where a stream is expected becomes one;
// `wit.Stream(wit.Stream.STRING)` makes a `{ readable, writable }` pair.

async function* greeting(name) {
  yield "Hello ";
  yield* name;
  yield "!";
}

export const flow = {
  // Called once per connection; the connection closes when the returned
  // stream ends, that is when the generator returns.
  async handle(info, incoming, closed) {
    return (async function* () {
      for await (const message of incoming) {
        if (message.tag === "binary-stream") {
          message.val.drop(); // dropped unread: the host discards the rest
        }
        if (message.tag !== "text" && message.tag !== "text-stream") {
          continue;
        }
        const name = message.tag === "text" ? [message.val] : message.val;
        const { readable, writable } = wit.Stream(wit.Stream.STRING);
        yield { tag: "text-stream", val: readable };
        for await (const chunk of greeting(name)) {
          if ((await writable.writeOne(chunk)) === 0) break; // the client went away
        }
        writable.drop();
      }
      closed.drop();
    })();
  },
};
