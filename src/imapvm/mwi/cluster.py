"""One publisher per mailbox among several nodes (DESIGN.md, Several nodes).

Every node knows the same list of nodes (``[cluster] nodes``, their health URLs) and checks the
others' ``/healthz`` every ``check_interval`` seconds: a node is live when it answers 200 (a
draining node answers 503 and hands its mailboxes over before it goes). Each mailbox belongs to
the live node with the highest rendezvous score ``sha256(node | mailbox)`` (highest random
weight hashing): every node computes the same owner from the same view, no coordination is
needed, and when a node dies only its own mailboxes move, spread evenly over the survivors.

The owner watches the mailbox and PUBLISHes its message-summary to the presence server; the
others do not. When the view changes a node recounts the mailboxes it gained and publishes them
at once, and withdraws its publications of those it lost. Two nodes that briefly disagree (one
has not yet seen a death or a return) both publish the mailbox: both recount it from the same
IMAP server, so they publish the same body, never a wrong one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from urllib.parse import urlparse

log = logging.getLogger(__name__)

Probe = Callable[[str], Awaitable[bool]]
ViewChange = Callable[[frozenset[str], frozenset[str]], Awaitable[None]]


def score(node: str, mailbox: str) -> int:
    digest = hashlib.sha256(f"{node}|{mailbox}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def owner(mailbox: str, nodes: Iterable[str]) -> str | None:
    """The node that publishes `mailbox` when `nodes` are live (None when none is)."""
    best: tuple[int, str] | None = None
    for node in nodes:
        candidate = (score(node, mailbox), node)
        if best is None or candidate > best:
            best = candidate
    return None if best is None else best[1]


def owned(mailboxes: Iterable[str], me: str, live: Iterable[str]) -> set[str]:
    """The mailboxes among `mailboxes` that `me` publishes when `live` are the live nodes
    (none when `me` is not among them: it is draining)."""
    nodes = sorted(set(live))
    return {box for box in mailboxes if owner(box, nodes) == me}


async def http_healthy(url: str, timeout: float) -> bool:  # noqa: ASYNC109 - a probe's limit
    """GET <url>/healthz answered 200 within `timeout`."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET /healthz HTTP/1.1\r\nHost: {parsed.netloc}\r\n"
                         "Connection: close\r\n\r\n".encode())
            line = await reader.readline()
    except (OSError, TimeoutError, ValueError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    parts = line.split()
    return len(parts) >= 2 and parts[1] == b"200"


class Membership:
    """This node's view of which nodes are live, kept current by health checks."""

    def __init__(self, nodes: Sequence[str], me: str, *, interval: float = 1.0,
                 probe: Probe | None = None, on_change: ViewChange | None = None) -> None:
        self.nodes = tuple(nodes)
        self.me = me
        self.interval = interval
        # A busy node may answer late: give it twice the interval, and two misses in a row.
        self.probe = probe or (lambda url: http_healthy(url, max(1.0, 2 * interval)))
        self.misses: dict[str, int] = {}
        self.max_misses = 2
        self.on_change = on_change
        #: The live nodes as last seen (this node counts itself live unless draining).
        self.live: frozenset[str] = frozenset(self.nodes)
        self.changes = 0
        self.self_live = True
        self._peers_live: frozenset[str] = frozenset(n for n in self.nodes if n != me)

    def owns(self, mailbox: str) -> bool:
        return self.self_live and owner(mailbox, self.live) == self.me

    async def set_self_live(self, live: bool) -> None:
        """A draining node hands its mailboxes over at once (the others see its 503 too)."""
        self.self_live = live
        await self._apply()

    async def _apply(self) -> bool:
        live = self._peers_live | ({self.me} if self.self_live else frozenset())
        if live == self.live:
            return False
        old, self.live = self.live, live
        self.changes += 1
        log.warning("cluster view: live nodes %s (were %s)", sorted(live), sorted(old))
        if self.on_change is not None:
            await self.on_change(old, live)
        return True

    async def check(self) -> bool:
        """Probe every other node once; True when the view changed (and was acted upon)."""
        peers = [n for n in self.nodes if n != self.me]
        results = await asyncio.gather(*(self.probe(n) for n in peers))
        for node, ok in zip(peers, results, strict=True):
            self.misses[node] = 0 if ok else self.misses.get(node, 0) + 1
            if not ok:
                log.debug("cluster: %s did not answer its health check (%d in a row)", node,
                          self.misses[node])
        self._peers_live = frozenset(n for n in peers if self.misses[n] < self.max_misses)
        return await self._apply()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.check()
            except Exception:  # the view must keep being refreshed whatever one check did
                log.exception("cluster health check failed")
            await asyncio.sleep(max(0.0, started + self.interval - loop.time()))
