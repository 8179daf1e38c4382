"""The MWI engine's SIP sink: message-summary NOTIFY to subscribers and configured phones,
and PUBLISH to a presence server (RFC 3842, RFC 6665, RFC 3903).

It keeps the last summary per mailbox (so a new subscriber hears it at once), the PUBLISH
entity tags with their refresh timers, and the addresses of configured peers, looked up once
at start so that sending never waits on DNS.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Protocol

from .message_summary import MessageSummary
from .sip.core import SipCore
from .sip.errors import SipParseError, SipStateError
from .sip.events import PublishResult
from .sip.uri import is_ip_literal, parse_uri
from .transport import Address

log = logging.getLogger(__name__)

MwiLookup = Callable[[str], Awaitable[MessageSummary | None]]

#: Times a PUBLISH the presence server failed (5xx, 408) is sent again, with growing pauses.
PUBLISH_RETRIES = 5


class MwiSinkSettings(Protocol):
    """What the sink reads of the SIP settings (`server.SipSettings` has it)."""

    @property
    def host(self) -> str: ...

    @property
    def mwi_presence_server(self) -> str | None: ...

    @property
    def mwi_publish_domain(self) -> str | None: ...

    @property
    def mwi_publish_expires(self) -> int: ...

    @property
    def mwi_unsolicited(self) -> Mapping[str, Sequence[str]]: ...


def same_family(address: str, host: str) -> bool:
    """Whether `address` (a resolved IP) is of the same family as the listening `host`: we send
    from that socket, so an IPv6 peer is useless to an IPv4 listener and vice versa."""
    return (":" in address) == (":" in host)


class MwiSink:
    def __init__(
        self,
        settings: MwiSinkSettings,
        core: Callable[[], SipCore],
        pump: Callable[[], None],
        clock: Callable[[], float],
        lookup: MwiLookup | None = None,
    ) -> None:
        self._settings = settings
        self._core = core
        self._pump = pump
        self._clock = clock
        self._lookup = lookup
        self._state: dict[str, MessageSummary] = {}
        # PUBLISH state per AOR: entity tag, last body, refresh timer (RFC 3903 §4)
        self._published: dict[str, tuple[str | None, bytes, asyncio.TimerHandle | None]] = {}
        self._withdrawn: set[str] = set()
        self._retries: dict[str, int] = {}
        self._resolved: dict[str, Address] = {}  # configured MWI URIs -> IP address and port
        # Subscriptions (re)started that have not had their NOTIFY yet (RFC 6665 §4.2.1.2:
        # one at once). `publish` pays the debt too, so a count published while a new
        # subscriber's lookup runs is not followed by a second, identical NOTIFY.
        self._owed: set[str] = set()

    def close(self) -> None:
        for _, _, refresh in self._published.values():
            if refresh is not None:
                refresh.cancel()

    def subscribed(self, handle: str) -> Coroutine[None, None, None]:
        """A SUBSCRIBE was accepted or refreshed: owe it a NOTIFY, at once (called where the
        event is dispatched, before anything else can run), and send it (await the result)."""
        self._owed.add(handle)
        return self.first_notify(handle)

    def forget(self, handle: str) -> None:
        """The subscription ended."""
        self._owed.discard(handle)

    async def first_notify(self, handle: str) -> None:
        sub = self._core().subscriptions.get(handle)
        if sub is None or handle not in self._owed:
            self._owed.discard(handle)
            return  # gone, or told already by a publish
        summary = self._state.get(sub.mailbox or "")
        if summary is None and self._lookup is not None and sub.mailbox:
            try:
                summary = await self._lookup(sub.mailbox)
            except Exception:
                log.exception("MWI lookup failed for %s", sub.mailbox)
            if handle not in self._owed:
                # A publish during the lookup (the first count of a mailbox nobody watched)
                # has told this subscriber: the same state twice is a blink, not news.
                return
            if summary is None:
                # Unknown is not zero (IMAP unreachable, nothing counted yet): a 0/0 would turn
                # off the lamp of a phone that rebooted during an outage. Say nothing; the first
                # real count reaches this subscriber through `publish`.
                log.info("MWI for %s not known yet; the first NOTIFY waits for a count",
                         sub.mailbox)
                return
        summary = summary or MessageSummary(0, 0)  # no store to ask: nothing is waiting
        self._owed.discard(handle)
        try:
            self._core().notify(handle, summary.render(sub.account), self._clock())
        except SipStateError:
            return  # the subscription ended during the lookup
        self._pump()

    def publish(self, mailbox: str, summary: MessageSummary, *, presence: bool = True) -> int:
        """Tell every subscriber of ``mailbox``, configured phones and (with ``presence``) the
        presence server."""
        self._state[mailbox] = summary
        now, sent = self._clock(), 0
        for handle in self._core().subscriptions_for(mailbox):
            sub = self._core().subscriptions[handle]
            self._core().notify(handle, summary.render(sub.account), now)
            self._owed.discard(handle)
            sent += 1
        if self._settings.mwi_presence_server and presence:
            sent += self._publish(mailbox, summary)
        for target in self._settings.mwi_unsolicited.get(mailbox, ()):
            address = self._resolved.get(target)
            if address is None:
                continue  # warned about at start
            self._core().send_unsolicited_notify(target, address, summary.render(target), now)
            sent += 1
        self._pump()
        return sent

    def republish(self, mailbox: str, summary: MessageSummary) -> int:
        """PUBLISH ``summary`` to the presence server again, and nothing else (this node's own
        subscribers and configured phones heard it already)."""
        self._state[mailbox] = summary
        if not self._settings.mwi_presence_server:
            return 0
        sent = self._publish(mailbox, summary)
        self._pump()
        return sent

    async def resolve_targets(self) -> None:
        """Look configured MWI peers up once at start: the per-message path must not block."""
        s = self._settings
        targets = [t for ts in s.mwi_unsolicited.values() for t in ts]
        if s.mwi_presence_server:
            targets.append(s.mwi_presence_server)
        loop = asyncio.get_running_loop()
        for target in targets:
            try:
                uri = parse_uri(target)
            except SipParseError:
                log.warning("MWI target %r is not a SIP URI", target)
                continue
            port = uri.port or 5060
            if is_ip_literal(uri.host):
                self._resolved[target] = (uri.host, port)
                continue
            try:
                infos = await loop.getaddrinfo(uri.host, port, type=2)  # SOCK_DGRAM
            except OSError as exc:
                log.warning("cannot resolve MWI target %r: %s", target, exc)
                continue
            family_ok = [i for i in infos if same_family(str(i[4][0]), s.host)]
            chosen = (family_ok or infos)[0][4]
            self._resolved[target] = (str(chosen[0]), int(chosen[1]))

    def _presence_address(self) -> Address | None:
        target = self._settings.mwi_presence_server or ""
        address = self._resolved.get(target)
        if address is None:
            log.warning("mwi_presence_server %r is not usable", target)
        return address

    def _publish(self, mailbox: str, summary: MessageSummary) -> int:
        address = self._presence_address()
        if address is None:
            return 0
        domain = self._settings.mwi_publish_domain or address[0]
        aor = f"sip:{mailbox}@{domain}"
        body = summary.render(aor)
        etag, _, timer = self._published.get(aor, (None, b"", None))
        if timer is not None:
            timer.cancel()
        self._published[aor] = (etag, body, None)
        log.debug("PUBLISH %s %d/%d (etag %s)", aor, summary.new, summary.old, etag)
        self._core().publish(aor, address, body, self._clock(), etag,
                          self._settings.mwi_publish_expires)
        return 1

    def withdraw(self, mailbox: str) -> bool:
        """Stop refreshing this node's publication of ``mailbox``: another node publishes it
        now. The publication is left to expire rather than removed (Expires: 0), so the
        presence server never holds no state at all between the two; the successor's newer
        publication is the one it notifies, and a refresh of ours can never make an old state
        the newest there."""
        address = self._presence_address() if self._settings.mwi_presence_server else None
        if address is None:
            return False
        domain = self._settings.mwi_publish_domain or address[0]
        aor = f"sip:{mailbox}@{domain}"
        etag, _, timer = self._published.pop(aor, (None, b"", None))
        if timer is not None:
            timer.cancel()
        self._withdrawn.add(aor)
        return etag is not None

    def on_publish_result(self, event: PublishResult) -> None:
        log.debug("PUBLISH %s answered %d (etag %s, expires %s)", event.aor, event.status,
                  event.etag, event.expires)
        if event.aor in self._withdrawn and event.aor not in self._published:
            self._withdrawn.discard(event.aor)  # the answer to a withdrawal: nothing to keep
            return
        self._withdrawn.discard(event.aor)
        _, body, timer = self._published.get(event.aor, (None, b"", None))
        if timer is not None:
            timer.cancel()
        address = self._presence_address()
        if 200 <= event.status < 300 and event.etag:
            refresh_in = max(1.0, event.expires * 0.9) if event.expires else None
            handle = None if refresh_in is None else asyncio.get_running_loop().call_later(
                refresh_in, self._refresh_publication, event.aor
            )
            self._published[event.aor] = (event.etag, body, handle)
        elif event.status == 412 and address is not None and body:
            # The presence server forgot our entity (restart): publish the state afresh.
            self._published[event.aor] = (None, body, None)
            self._core().publish(event.aor, address, body, self._clock(), None,
                              self._settings.mwi_publish_expires)
            self._pump()
        elif event.status == 423 and address is not None and body and event.min_expires:
            self._core().publish(event.aor, address, body, self._clock(), None, event.min_expires)
            self._pump()
        elif (event.status >= 500 or event.status == 408) and body and address is not None:
            # The presence server failed this once (busy database, overload): the state must
            # still reach it, or the lamp stays wrong until the next change.
            tries = self._retries.get(event.aor, 0) + 1
            self._retries[event.aor] = tries
            if tries > PUBLISH_RETRIES:
                log.warning("PUBLISH for %s answered %d %d times; giving up until the next "
                            "change", event.aor, event.status, tries - 1)
                return
            log.info("PUBLISH for %s answered %d; retrying", event.aor, event.status)
            etag = self._published.get(event.aor, (None, b"", None))[0]
            handle = asyncio.get_running_loop().call_later(
                0.2 * tries, self._resend, event.aor, etag, body)
            self._published[event.aor] = (etag, body, handle)
            return
        else:
            log.warning("PUBLISH for %s answered %d", event.aor, event.status)
        if 200 <= event.status < 300:
            self._retries.pop(event.aor, None)

    def _resend(self, aor: str, etag: str | None, body: bytes) -> None:
        address = self._presence_address()
        current = self._published.get(aor)
        if address is None or current is None or current[1] != body:
            return  # withdrawn, or a newer state went out meanwhile
        self._published[aor] = (etag, body, None)
        self._core().publish(aor, address, body, self._clock(), etag,
                             self._settings.mwi_publish_expires)
        self._pump()

    def _refresh_publication(self, aor: str) -> None:
        etag, body, _ = self._published.get(aor, (None, b"", None))
        address = self._presence_address()
        if etag is None or address is None:
            return
        self._published[aor] = (etag, body, None)
        self._core().publish(aor, address, b"", self._clock(), etag,
                          self._settings.mwi_publish_expires)
        self._pump()

