"""Waiting without blocking the instance."""

from __future__ import annotations

from ._bindings import monotonic_clock


async def sleep(seconds: float) -> None:
    """Waits for `seconds` while the instance keeps serving its other tasks
    (the sink and the source of one connection share it).

    `time.sleep` would block the whole instance, and `asyncio.sleep` has no
    timer to run on inside a component: use this. It needs a world that
    imports `wasi:clocks/monotonic-clock@0.3.0`, as the SDK's worlds do.
    """
    if monotonic_clock is None:
        raise RuntimeError(
            "wsplug.sleep needs a world that imports wasi:clocks/monotonic-clock@0.3.0 "
            "(wsplug:python/flow, wsplug:python/sink-source)"
        )
    await monotonic_clock.wait_for(max(0, round(seconds * 1_000_000_000)))
