"""Synchronise on conditions, never on fixed sleeps: a test waits until what it needs is true
(or fails after a generous bound), so it passes on a busy machine and wastes no time on an idle
one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(predicate: Callable[[], object], within: float = 10.0, what: str = "") -> None:
    """Return as soon as `predicate()` is true; fail after `within` seconds. The condition is
    checked after every pass of the event loop (and at least every 5 ms)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"not true within {within:g} s: {what or predicate}")
        await asyncio.sleep(0.005)
