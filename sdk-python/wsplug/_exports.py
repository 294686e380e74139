"""The export classes componentize-py instantiates, built around the
handler's functions, and the handshake's decisions.

componentize-py looks up one class per exported interface in the app
module, by the interface's name: `Flow`, or `Sink` and `Source`, and
`Handshake`. Each must subclass the protocol of that name in
`wit_world.exports`, whose generated code starts the component-model task
of an async call. componentize-py instantiates each class once, when it
builds the component, so a mistake here (a handler that is not a coroutine
function, a world without that export) fails the build, not the first
connection.
"""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, Optional, Sequence

from ._bindings import FutureReader, StreamReader, exports, message_stream, spawn, types
from ._incoming import Incoming
from ._outgoing import Closed, Outgoing

ConnectionInfo = types.ConnectionInfo
HandshakeRequest = types.HandshakeRequest
Decision = types.Decision

FlowFunction = Callable[[ConnectionInfo, Incoming, Outgoing], Awaitable[None]]
SinkFunction = Callable[[ConnectionInfo, Incoming], Awaitable[None]]
SourceFunction = Callable[[ConnectionInfo, Outgoing], Awaitable[None]]
DecideFunction = Callable[[HandshakeRequest], Decision]


def _check_async(function: Callable[..., Any], role: str) -> None:
    if not inspect.iscoroutinefunction(function):
        raise TypeError(f"the {role} must be an `async def` function, got {function!r}")


def _protocol(name: str) -> type:
    """The generated export protocol `name`, or a clear error if the world
    being built does not export it."""
    try:
        protocol: type = getattr(exports, name)
    except AttributeError:
        raise TypeError(f"the world being built does not export `{name}` (see wsplug's docs for the worlds)") from None
    return protocol


async def _guarded(handler: Awaitable[None], *ends: Incoming | Outgoing) -> None:
    """Runs a handler to its end. `Closed` ends it quietly, like a return;
    any other exception is printed (to the host's log) and traps the
    instance, which the host reports as `1011 handler failed`."""
    try:
        await handler
    except Closed:
        pass
    except BaseException:
        traceback.print_exc()
        raise
    for end in ends:
        end.close()


def _spawn_producer(start: Callable[[Outgoing], Awaitable[None]], *ends: Incoming) -> StreamReader[types.Message]:
    """Starts the handler in a task of its own and returns the stream it
    writes to: the export returns at once and the task keeps writing."""
    writer, reader = message_stream()
    outgoing = Outgoing(writer)
    spawn(_guarded(start(outgoing), outgoing, *ends))
    return reader


def flow(run: FlowFunction) -> type:
    """The `Flow` export for ``async def run(info, incoming, outgoing)``,
    called once per connection; the connection closes when it returns::

        Flow = wsplug.flow(run)
    """
    _check_async(run, "flow")

    class Flow(_protocol("Flow")):  # type: ignore[misc]
        async def handle(
            self,
            info: ConnectionInfo,
            incoming: StreamReader[types.Message],
            closed: FutureReader[Optional[types.CloseFrame]],
        ) -> StreamReader[types.Message]:
            messages = Incoming(incoming, closed)
            return _spawn_producer(lambda outgoing: run(info, messages, outgoing), messages)

    return Flow


def sink(consume: SinkFunction) -> type:
    """The `Sink` export for ``async def consume(info, incoming)``, called once
    per connection, concurrently with the source on the same instance (so
    the two may share state through module globals)::

        Sink = wsplug.sink(consume)
    """
    _check_async(consume, "sink")

    class Sink(_protocol("Sink")):  # type: ignore[misc]
        async def consume(
            self,
            info: ConnectionInfo,
            incoming: StreamReader[types.Message],
            closed: FutureReader[Optional[types.CloseFrame]],
        ) -> None:
            messages = Incoming(incoming, closed)
            await _guarded(consume(info, messages), messages)

    return Sink


def source(produce: SourceFunction) -> type:
    """The `Source` export for ``async def produce(info, outgoing)``, called
    once per connection; the connection closes when it returns::

        Source = wsplug.source(produce)
    """
    _check_async(produce, "source")

    class Source(_protocol("Source")):  # type: ignore[misc]
        async def produce(self, info: ConnectionInfo) -> StreamReader[types.Message]:
            return _spawn_producer(lambda outgoing: produce(info, outgoing))

    return Source


def handshake(decide: Optional[DecideFunction] = None) -> type:
    """The `Handshake` export: ``decide(request) -> Decision``, called before
    the upgrade on the instance that then serves the connection. Without
    `decide`, the host's own policy (`default_decision`), which also applies
    when the world being built has no `handshake` export::

        Handshake = wsplug.handshake()
        Handshake = wsplug.handshake(decide)
    """
    chosen = decide if decide is not None else default_decision
    if inspect.iscoroutinefunction(chosen):
        raise TypeError("the handshake is a plain function (`def`, not `async def`)")
    if decide is None and not hasattr(exports, "Handshake"):
        # A world without the export: the host applies the same default.
        return object

    class Handshake(_protocol("Handshake")):  # type: ignore[misc]
        def decide(self, request: HandshakeRequest) -> Decision:
            return chosen(request)

    return Handshake


def accept(subprotocol: Optional[str] = None, headers: Sequence[tuple[str, str]] = ()) -> Decision:
    """Go ahead, with `subprotocol` (one the client offered, or none) and
    extra response headers."""
    return types.Decision_Accept(types.Acceptance(subprotocol, list(headers)))


def reject(status: int, body: str = "", headers: Sequence[tuple[str, str]] = ()) -> Decision:
    """Refuse with an HTTP `status` (4xx or 5xx) and a text `body`."""
    return types.Decision_Reject(types.Rejection(status, list(headers), body))


def default_decision(request: HandshakeRequest) -> Decision:
    """What the host decides for a component without a handshake: accept,
    with the route's first configured subprotocol that the client offered."""
    offered = set(request.offered_protocols)
    return accept(next((p for p in request.route_protocols if p in offered), None))


def header(request: HandshakeRequest | ConnectionInfo, name: str) -> Optional[str]:
    """The first value of header `name` (lower case) of the upgrade request,
    if present."""
    return next((value for key, value in request.headers if key == name), None)
