"""The componentize-py bindings the SDK wraps, whatever world they were made for.

componentize-py generates the package `wit_world` when it builds the
component. Its module names depend on the world: with `flow-handler` the
shared types are `wit_world.imports.types`; with `flow-guest` (which also
imports `wasi:clocks`, whose interface is called `types` too) they are
`wit_world.imports.wsplug_websocket_types`. This module hides the
difference; the rest of the SDK imports from here only.

Everything is imported here, when the app module is imported: componentize-py
runs that at build time and snapshots the interpreter, and at run time the
component has no file system to import a module from.
"""

from __future__ import annotations

import wit_world
from wit_world import exports

try:
    from wit_world.imports import wsplug_websocket_types as types

    message_stream = wit_world.wsplug_websocket_types_message_stream
except ImportError:
    from wit_world.imports import types  # type: ignore[no-redef,attr-defined]

    message_stream = wit_world.types_message_stream  # type: ignore[attr-defined]

# Only in worlds that import wasi:clocks@0.3.0 (the SDK's); for `sleep`.
try:
    from wit_world.imports import monotonic_clock
except ImportError:
    monotonic_clock = None  # type: ignore[assignment]

from componentize_py_async_support import spawn
from componentize_py_async_support.futures import FutureReader
from componentize_py_async_support.streams import (
    ByteStreamReader,
    ByteStreamWriter,
    StreamReader,
    StreamWriter,
)


def string_stream() -> tuple[StreamWriter[str], StreamReader[str]]:
    """A new `stream<string>`: (writer, reader)."""
    return wit_world.string_stream()


def byte_stream() -> tuple[ByteStreamWriter, ByteStreamReader]:
    """A new `stream<u8>`: (writer, reader)."""
    return wit_world.byte_stream()


def drop(end: object) -> None:
    """Closes one end of a stream or future, unless it is closed already.

    An end that travelled to the host inside a message (a streamed message
    passed on) has lost its handle: the host owns it now, nothing to close.
    """
    if getattr(end, "handle", None) is not None:
        end.__exit__(None, None, None)  # type: ignore[attr-defined]


__all__ = [
    "ByteStreamReader",
    "exports",
    "ByteStreamWriter",
    "FutureReader",
    "StreamReader",
    "StreamWriter",
    "byte_stream",
    "drop",
    "message_stream",
    "monotonic_clock",
    "spawn",
    "string_stream",
    "types",
]
