"""Writing: the stream of outgoing messages, and writers for streamed ones."""

from __future__ import annotations

from typing import Generic, Optional, TypeVar, Union

from ._bindings import ByteStreamWriter, StreamWriter, byte_stream, drop, string_stream, types
from ._incoming import Message


class Closed(Exception):
    """The connection is gone: the client closed it or the host dropped it.

    Raised by every send and write once the host no longer takes messages. A
    handler may let it propagate: the SDK ends the handler quietly.
    """

    def __init__(self) -> None:
        super().__init__("the WebSocket connection is closed")


class Outgoing:
    """The messages a handler sends on one connection, in order.

    The output ends when the handler returns, and the host then closes the
    connection (code 1000).
    """

    def __init__(self, messages: StreamWriter[types.Message]) -> None:
        self._messages = messages
        self._streaming = False

    async def send(self, message: Union[Message, str, bytes]) -> None:
        """Sends a message: a ``str`` as a strict text message, ``bytes`` as a
        strict binary one, or a received `Message` on unchanged, in the form
        it came in (a streamed one is passed on as a stream, without being
        collected)."""
        if isinstance(message, str):
            await self._write(types.Message_Text(message))
        elif isinstance(message, (bytes, bytearray, memoryview)):
            await self._write(types.Message_Binary(bytes(message)))
        elif isinstance(message, Message):
            message._read = True  # its payload now belongs to the host
            await self._write(message._value)
        else:
            raise TypeError(f"cannot send a {type(message).__name__}: str, bytes or wsplug.Message")

    async def send_text(self, text: str) -> None:
        """Sends a strict text message."""
        await self._write(types.Message_Text(text))

    async def send_binary(self, data: bytes) -> None:
        """Sends a strict binary message."""
        await self._write(types.Message_Binary(bytes(data)))

    def text_stream(self) -> _StreamedMessage[TextWriter]:
        """A streamed text message, for ``async with``::

            async with outgoing.text_stream() as reply:
                await reply.write("Hello ")
                await reply.write("world")

        The client sees a fragmented message whose first frame leaves with
        the first chunk; the message ends with the block. No other message
        can be sent before it has ended.
        """
        writer, reader = string_stream()
        return _StreamedMessage(self, TextWriter(writer), types.Message_TextStream(reader))

    def binary_stream(self) -> _StreamedMessage[BinaryWriter]:
        """A streamed binary message, for ``async with`` (see `text_stream`)."""
        writer, reader = byte_stream()
        return _StreamedMessage(self, BinaryWriter(writer), types.Message_BinaryStream(reader))

    def close(self) -> None:
        """Ends the output; the host then closes the connection. The SDK does
        this when the handler returns."""
        drop(self._messages)

    async def _write(self, value: types.Message) -> None:
        if self._streaming:
            raise RuntimeError("a streamed message is still open: end it before sending another")
        if await self._messages.write([value]) == 0:
            raise Closed()


class TextWriter:
    """The payload of a streamed text message being sent."""

    def __init__(self, writer: StreamWriter[str]) -> None:
        self._writer = writer

    async def write(self, chunk: str) -> None:
        """Sends one chunk of the message (an empty one is skipped)."""
        if not chunk:
            return
        if self._writer.handle is None:
            raise RuntimeError("the streamed message has ended")
        if await self._writer.write([chunk]) == 0:
            raise Closed()


class BinaryWriter:
    """The payload of a streamed binary message being sent."""

    def __init__(self, writer: ByteStreamWriter) -> None:
        self._writer = writer

    async def write(self, chunk: bytes) -> None:
        """Sends one chunk of the message (an empty one is skipped)."""
        if not chunk:
            return
        if self._writer.handle is None:
            raise RuntimeError("the streamed message has ended")
        if await self._writer.write_all(bytes(chunk)) < len(chunk):
            raise Closed()


W = TypeVar("W", bound=Union[TextWriter, BinaryWriter])


class _StreamedMessage(Generic[W]):
    """The ``async with`` block of a streamed message: entering sends the
    message, leaving ends its payload."""

    def __init__(self, outgoing: Outgoing, writer: W, message: types.Message) -> None:
        self._outgoing = outgoing
        self._writer: W = writer
        self._message: Optional[types.Message] = message

    async def __aenter__(self) -> W:
        message, self._message = self._message, None
        if message is None:
            raise RuntimeError("a streamed message can be sent once")
        try:
            await self._outgoing._write(message)
        except BaseException:
            drop(message.value)
            drop(self._writer._writer)
            raise
        self._outgoing._streaming = True
        return self._writer

    async def __aexit__(self, *_: object) -> None:
        self._outgoing._streaming = False
        drop(self._writer._writer)
