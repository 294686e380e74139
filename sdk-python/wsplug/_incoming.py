"""Reading: the stream of incoming messages, and one message's payload
whatever its form (strict or streamed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Optional, Union

from ._bindings import ByteStreamReader, FutureReader, StreamReader, drop, types

#: How many items one read asks the host for at most: messages, text chunks,
#: or bytes of a binary chunk.
_MESSAGE_BATCH = 16
_TEXT_BATCH = 16
_BINARY_CHUNK = 64 * 1024


class Message:
    """One WebSocket message, text or binary, strict or streamed.

    Read its payload chunk by chunk with ``async for chunk in message`` (``str``
    chunks for text, ``bytes`` for binary; a strict message has one chunk; or
    typed: `text_chunks()`, `data_chunks()`), or whole with
    ``await message.text()`` / ``await message.data()``. The payload
    can be read once. A handler must accept both forms: the host decides which
    one a message takes (one frame of up to 64 KiB is strict, anything else is
    streamed, its chunks arriving as the client sends them).

    A streamed message that is not read to the end is fine: its rest is
    discarded when the handler asks `Incoming` for the next message, when the
    message is closed (`close()`, or leaving a ``with message:`` block), or
    when it is garbage-collected.
    """

    __slots__ = ("_value", "_read")

    def __init__(self, value: types.Message) -> None:
        self._value = value
        self._read = False

    @property
    def is_text(self) -> bool:
        """Whether this is a text message (strict or streamed)."""
        return isinstance(self._value, (types.Message_Text, types.Message_TextStream))

    @property
    def is_binary(self) -> bool:
        """Whether this is a binary message (strict or streamed)."""
        return not self.is_text

    @property
    def is_streamed(self) -> bool:
        """Whether the payload arrives in chunks rather than whole."""
        return isinstance(self._value, (types.Message_TextStream, types.Message_BinaryStream))

    def __repr__(self) -> str:
        kind = ("text" if self.is_text else "binary") + (" stream" if self.is_streamed else "")
        return f"<wsplug.Message {kind}>"

    def __aiter__(self) -> AsyncIterator[Union[str, bytes]]:
        return self.chunks()

    async def chunks(self) -> AsyncIterator[Union[str, bytes]]:
        """The payload chunk by chunk, as the host delivers it: ``str`` chunks
        (each valid UTF-8 on its own) for text, non-empty ``bytes`` for binary."""
        if self._read:
            raise RuntimeError("the message's payload has already been read")
        self._read = True
        value = self._value
        if isinstance(value, (types.Message_Text, types.Message_Binary)):
            yield value.value
            return
        try:
            if isinstance(value, types.Message_TextStream):
                reader: StreamReader[str] = value.value
                while chunks := await reader.read(_TEXT_BATCH):
                    for chunk in chunks:
                        yield chunk
            else:
                byte_reader: ByteStreamReader = value.value
                while True:
                    data = await byte_reader.read(_BINARY_CHUNK)
                    if data:
                        yield data
                    elif byte_reader.writer_dropped:
                        break
        finally:
            self.close()

    async def text_chunks(self) -> AsyncIterator[str]:
        """`chunks()` of a text message, typed; `TypeError` for a binary one."""
        if not self.is_text:
            raise TypeError("a binary message has no text (use data_chunks())")
        async for chunk in self.chunks():
            assert isinstance(chunk, str)
            yield chunk

    async def data_chunks(self) -> AsyncIterator[bytes]:
        """`chunks()` of a binary message, typed; `TypeError` for a text one."""
        if self.is_text:
            raise TypeError("a text message has no binary data (use text_chunks())")
        async for chunk in self.chunks():
            assert isinstance(chunk, bytes)
            yield chunk

    async def text(self) -> str:
        """The whole payload of a text message; `TypeError` for a binary one."""
        return "".join([chunk async for chunk in self.text_chunks()])

    async def data(self) -> bytes:
        """The whole payload of a binary message; `TypeError` for a text one."""
        return b"".join([chunk async for chunk in self.data_chunks()])

    def close(self) -> None:
        """Gives up the rest of a streamed payload (the host discards it).
        Nothing to do for a strict message; closing twice is fine."""
        if isinstance(self._value, (types.Message_TextStream, types.Message_BinaryStream)):
            drop(self._value.value)

    def __enter__(self) -> Message:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Incoming:
    """The messages a client sends on one connection, in order:
    ``async for message in incoming``. The iteration ends when the client
    closes the connection.

    Asking for the next message closes the previous one: read a streamed
    payload before moving on (the host cannot deliver the next message while
    the previous one's rest is still waiting to be read).
    """

    def __init__(
        self,
        messages: StreamReader[types.Message],
        closed: FutureReader[Optional[types.CloseFrame]],
    ) -> None:
        self._messages = messages
        self._closed: Optional[FutureReader[Optional[types.CloseFrame]]] = closed
        self._buffer: list[types.Message] = []
        self._current: Optional[Message] = None

    def __aiter__(self) -> Incoming:
        return self

    async def __anext__(self) -> Message:
        message = await self.next()
        if message is None:
            raise StopAsyncIteration
        return message

    async def next(self) -> Optional[Message]:
        """The next message, or `None` once the client has closed."""
        if self._current is not None:
            self._current.close()
            self._current = None
        if not self._buffer:
            self._buffer = await self._messages.read(_MESSAGE_BATCH)
            if not self._buffer:
                return None
        self._current = Message(self._buffer.pop(0))
        return self._current

    async def close_frame(self) -> Optional[types.CloseFrame]:
        """The client's close frame (``code``, ``reason``) once the input has
        ended; `None` if the connection ended without one (dropped, or closed
        by the server), or if it was asked for before. Asked for earlier, it
        waits until the input ends. Code 1006 means the connection
        dropped in the middle of a streamed message, whose payload is
        therefore incomplete."""
        closed, self._closed = self._closed, None
        if closed is None:
            return None
        return await closed.read()

    def close(self) -> None:
        """Stops reading: drops the message stream and whatever is left."""
        if self._current is not None:
            self._current.close()
            self._current = None
        for value in self._buffer:
            Message(value).close()
        self._buffer = []
        drop(self._messages)
        if self._closed is not None:
            drop(self._closed)
            self._closed = None
