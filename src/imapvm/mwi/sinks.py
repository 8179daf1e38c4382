"""Where MWI updates go, and the fan-out that keeps the sinks independent.

Every sink gets its own worker and its own queue, so a sink that is down or slow (a webhook
timing out, an AMI that is restarting) never delays another one, nor the tracker. Each queue
keeps only the latest update per published name: a sink that was away for a while receives the
current state, not a backlog of superseded ones. Each delivery is bounded by a timeout.

Sinks here: the callback sink (what the SIP message-summary notifier plugs into) and
externnotify (Asterisk's script). AMI and the webhook live in `ami.py` and `webhook.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import shlex
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

from imapvm.mwi.model import MwiUpdate

log = logging.getLogger(__name__)


@runtime_checkable
class Sink(Protocol):
    """Receives MWI updates. `publish` may raise: the fan-out logs it and carries on."""

    name: str

    async def publish(self, update: MwiUpdate) -> None: ...


class CallbackSink:
    """Calls `callback(update)` (a plain or async function). The SIP notifier registers one:
    `engine.add_sink(CallbackSink(notifier.on_mwi, name="sip"))`."""

    def __init__(self, callback: Callable[[MwiUpdate], Awaitable[None] | None],
                 name: str = "callback", *, include_stale: bool = True) -> None:
        self.name = name
        self._callback = callback
        self._include_stale = include_stale

    async def publish(self, update: MwiUpdate) -> None:
        if not update.counts_changed and not self._include_stale:
            return
        result = self._callback(update)
        if inspect.isawaitable(result):
            await result


class ExternNotifySink:
    """Runs voicemail.conf's `externnotify` program as Asterisk does: arguments
    `context mailbox new old urgent` (new without urgent, as `inboxcount2`).

    Asterisk builds a shell line (`ast_safe_system`); here the program line is split with shell
    quoting rules and run without a shell, so a mailbox name can never inject a command. An
    empty context is passed as `""`, as Asterisk does. Only count changes run it (Asterisk runs
    it when counts change), not a change of staleness alone."""

    def __init__(self, program: str, *, timeout: float = 10.0) -> None:
        self.name = "externnotify"
        self._argv = shlex.split(program)
        if not self._argv:
            raise ValueError("externnotify is empty")
        self.timeout = timeout

    async def publish(self, update: MwiUpdate) -> None:
        if not update.counts_changed:
            return
        args = [update.context or '""', update.mailbox, str(update.new), str(update.old),
                str(update.urgent)]
        proc = await asyncio.create_subprocess_exec(
            *self._argv, *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise TimeoutError(f"externnotify {self._argv[0]} ran over {self.timeout:g}s "
                               "and was killed") from None
        if proc.returncode:
            raise RuntimeError(f"externnotify {self._argv[0]} exited {proc.returncode}: "
                               f"{err.decode(errors='replace').strip()[:200]}")


class _SinkWorker:
    """One sink's queue (latest update per name) and the task that delivers it."""

    def __init__(self, sink: Sink, timeout: float) -> None:
        self.sink = sink
        self.timeout = timeout
        self._pending: dict[str, MwiUpdate] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failed = 0

    def offer(self, update: MwiUpdate) -> None:
        previous = self._pending.pop(update.name, None)
        if previous is not None and previous.counts_changed and not update.counts_changed:
            # the superseded update carried new numbers: keep that news for count-only sinks
            update = MwiUpdate(**{**update.__dict__, "counts_changed": True})
        self._pending[update.name] = update
        self._ready.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"mwi-sink-{self.sink.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        # Cancel until it is done: a cancellation that lands as the sink's call completes is
        # swallowed by wait_for (Python 3.11), and the worker would wait for updates forever.
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=1)

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._pending:
                name = next(iter(self._pending))
                update = self._pending.pop(name)
                try:
                    await asyncio.wait_for(self.sink.publish(update), self.timeout)
                    self.delivered += 1
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.failed += 1
                    log.warning("mwi sink %s failed for %s: %s", self.sink.name, name,
                                exc or type(exc).__name__)


class SinkFanout:
    """Delivers every update to every sink, each on its own worker. `publish` never blocks."""

    def __init__(self, sinks: Sequence[Sink] = (), *, timeout: float = 15.0) -> None:
        self.timeout = timeout
        self._workers: list[_SinkWorker] = [_SinkWorker(s, timeout) for s in sinks]
        self._started = False

    def add(self, sink: Sink, timeout: float | None = None) -> None:
        worker = _SinkWorker(sink, timeout or self.timeout)
        self._workers.append(worker)
        if self._started:
            worker.start()

    @property
    def sinks(self) -> list[Sink]:
        return [w.sink for w in self._workers]

    def publish(self, update: MwiUpdate) -> None:
        for w in self._workers:
            w.offer(update)

    @property
    def queued(self) -> int:
        """Updates waiting for a sink (not counting those being delivered)."""
        return sum(len(w._pending) for w in self._workers)

    def start(self) -> None:
        self._started = True
        for w in self._workers:
            w.start()

    async def stop(self) -> None:
        self._started = False
        await asyncio.gather(*(w.stop() for w in self._workers))
        for w in self._workers:
            closer = getattr(w.sink, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()
