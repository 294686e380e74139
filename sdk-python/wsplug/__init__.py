"""Write wsplug WebSocket handlers in Python.

A handler is a WebAssembly component built with componentize-py 0.25.1 from
`wit/websocket.wit`. Write one coroutine per connection and export it:

- a flow, messages in and messages out::

      import wsplug

      async def run(info: wsplug.ConnectionInfo, incoming: wsplug.Incoming, outgoing: wsplug.Outgoing) -> None:
          async for message in incoming:
              await outgoing.send(message)   # echo, in the form it came in

      Flow = wsplug.flow(run)
      Handshake = wsplug.handshake()

- or a sink and a source, input and output independent (server push),
  run concurrently on one instance::

      async def consume(info, incoming): ...
      async def produce(info, outgoing): ...

      Sink = wsplug.sink(consume)
      Source = wsplug.source(produce)
      Handshake = wsplug.handshake()

componentize-py instantiates the classes named after the exported
interfaces (`Flow`, `Sink`, `Source`, `Handshake`) in the app module, hence
the assignments. `wsplug.handshake(decide)` exports your own opening
handshake (``def decide(request) -> wsplug.accept(...) | wsplug.reject(...)``);
`wsplug.handshake()` the host's default.

Build with this directory and the app's on the Python path, for one of the
worlds in `sdk-python/wit/python.wit` (the Rust SDK's worlds: topics and an
async timer imported, the handshake exported)::

    componentize-py -d wit -d sdk-python/wit -w wsplug:python/flow \\
        componentize app -p sdk-python -p guest-examples/greeter-python -o greeter.wasm

(`-w wsplug:python/sink-source` for a sink and a source; the plain
`-w flow-handler` works too, without the handshake export and `sleep`.)

Messages: iterate `incoming` (``async for message in incoming``); each
`Message` is text or binary, strict or streamed; read its chunks with
``async for chunk in message`` or the whole payload with
``await message.text()`` / ``await message.data()``. Asking for the next
message discards what is left of the previous one. Send with
``await outgoing.send_text(s)``, ``send_binary(b)``, ``send(message)``, or
a streamed message::

    async with outgoing.text_stream() as reply:
        await reply.write("chunk")

Every send raises `Closed` once the connection is gone; letting it propagate
ends the handler quietly. Any other exception is printed to the host's log
and fails the connection (`1011`). Never block: no `time.sleep`, use
`await wsplug.sleep(seconds)`. Import modules at module level only: at run
time the component has no file system to import from.
"""

from ._bindings import types
from ._exports import (
    ConnectionInfo,
    Decision,
    HandshakeRequest,
    accept,
    default_decision,
    flow,
    handshake,
    header,
    reject,
    sink,
    source,
)
from ._incoming import Incoming, Message
from ._outgoing import BinaryWriter, Closed, Outgoing, TextWriter
from ._time import sleep

CloseFrame = types.CloseFrame

__all__ = [
    "BinaryWriter",
    "CloseFrame",
    "Closed",
    "ConnectionInfo",
    "Decision",
    "HandshakeRequest",
    "Incoming",
    "Message",
    "Outgoing",
    "TextWriter",
    "accept",
    "default_decision",
    "flow",
    "handshake",
    "header",
    "reject",
    "sink",
    "sleep",
    "source",
]
