"""The greeter in Python: answers each text message `Peter` with
`Hello Peter!`, streaming the name back as it arrives. Binary messages are
ignored. The same behaviour as the Rust greeter (`../greeter`).

Build it from the repository's root with `make greeter-python`, which makes
a virtualenv with componentize-py 0.25.1 in `target/python-venv` and runs::

    componentize-py -d wit -d sdk-python/wit -w wsplug:python/flow componentize app \\
        -p guest-examples/greeter-python -p sdk-python -o target/python/greeter.wasm

then serve it::

    target/release/wsplug serve --route /greeter=target/python/greeter.wasm
    echo Peter | target/release/wsplug talk ws://127.0.0.1:8080/greeter
"""

import wsplug


async def run(info: wsplug.ConnectionInfo, incoming: wsplug.Incoming, outgoing: wsplug.Outgoing) -> None:
    async for name in incoming:
        if not name.is_text:
            continue  # a binary message is dropped unread: the host discards it
        async with outgoing.text_stream() as reply:
            await reply.write("Hello ")
            async for chunk in name.text_chunks():
                await reply.write(chunk)
            await reply.write("!")


# The exports componentize-py instantiates, by interface name.
Flow = wsplug.flow(run)
Handshake = wsplug.handshake()
