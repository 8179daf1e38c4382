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

#: A PUBLISH the presence server failed (5xx, 408) is sent again after 0.2 s, doubling up to
#: PUBLISH_RETRY_MAX s, until it succeeds; a warning after PUBLISH_RETRIES failures in a row.
PUBLISH_RETRIES = 5
PUBLISH_RETRY_MAX = 5.0


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
        self._inflight: dict[str, bytes] = {}  # AOR -> body of the PUBLISH awaiting its answer
        self._dirty: set[str] = set()  # AORs whose latest state waits for that answer
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
        self._send(aor, address)
        return 1

    def _send(self, aor: str, address: Address, *, refresh: bool = False,
              expires: int | None = None) -> None:
        """Send ``aor``'s latest state (or, with ``refresh``, an empty refresh), unless a
        PUBLISH of it is waiting for its answer: then the latest state goes when that answer
        comes, with the entity tag it brings. One request at a time per AOR (RFC 3903 §4.1):
        each answer then belongs to a known request, and the presence server, which may
        process two requests at once and NOTIFY in either order, can never be left with an
        older state taking effect after a newer one."""
        if aor in self._inflight:
            if not refresh:
                self._dirty.add(aor)
            return
        etag, body, _ = self._published[aor]
        if refresh and etag is None:
            return
        self._dirty.discard(aor)
        payload = b"" if refresh else body
        self._inflight[aor] = payload
        self._core().publish(aor, address, payload, self._clock(), etag,
                             expires or self._settings.mwi_publish_expires)
        self._pump()

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
        self._dirty.discard(aor)
        self._retries.pop(aor, None)
        self._withdrawn.add(aor)
        return etag is not None

    def on_publish_result(self, event: PublishResult) -> None:
        aor = event.aor
        sent = self._inflight.pop(aor, None)
        log.debug("PUBLISH %s answered %d (etag %s, expires %s)", aor, event.status,
                  event.etag, event.expires)
        if aor in self._withdrawn and aor not in self._published:
            self._withdrawn.discard(aor)  # the answer to a withdrawal: nothing to keep
            self._dirty.discard(aor)
            return
        self._withdrawn.discard(aor)
        current = self._published.get(aor)
        address = self._presence_address()
        if current is None or address is None:
            return
        etag, body, timer = current
        if timer is not None:
            timer.cancel()
        self._published[aor] = (etag, body, None)
        if 200 <= event.status < 300:
            self._retries.pop(aor, None)
            self._published[aor] = (event.etag or etag, body, None)
            if aor in self._dirty or (sent and sent != body):
                self._send(aor, address)  # a newer state waited for this answer
                return
            if event.expires:
                handle = asyncio.get_running_loop().call_later(
                    max(1.0, event.expires * 0.9), self._refresh_publication, aor)
                self._published[aor] = (event.etag or etag, body, handle)
        elif event.status == 412:
            # The presence server does not know our entity (it restarted, or it expired):
            # publish the latest state afresh.
            self._published[aor] = (None, body, None)
            self._send(aor, address)
        elif event.status == 423 and event.min_expires:
            self._published[aor] = (None, body, None)
            self._send(aor, address, expires=event.min_expires)
        elif event.status >= 500 or event.status == 408:
            # The presence server failed this time (busy database, overload): the latest state
            # must still reach it, or the lamp stays wrong until the next change. Retried with
            # growing pauses, and never given up while this node publishes the mailbox.
            tries = self._retries.get(aor, 0) + 1
            self._retries[aor] = tries
            if tries == PUBLISH_RETRIES:
                log.warning("PUBLISH for %s answered %d %d times in a row; still retrying",
                            aor, event.status, tries)
            else:
                log.log(logging.INFO if tries < PUBLISH_RETRIES else logging.DEBUG,
                        "PUBLISH for %s answered %d; retrying", aor, event.status)
            handle = asyncio.get_running_loop().call_later(
                min(PUBLISH_RETRY_MAX, 0.2 * 2 ** (tries - 1)), self._resend, aor)
            self._published[aor] = (etag, body, handle)
        else:
            log.warning("PUBLISH for %s answered %d", aor, event.status)
            if aor in self._dirty:
                self._send(aor, address)  # a newer state may fare better

    def _resend(self, aor: str) -> None:
        address = self._presence_address()
        current = self._published.get(aor)
        if address is None or current is None:
            return  # withdrawn meanwhile
        self._published[aor] = (current[0], current[1], None)
        self._send(aor, address)  # the latest state, whatever failed before

    def _refresh_publication(self, aor: str) -> None:
        current = self._published.get(aor)
        address = self._presence_address()
        if current is None or current[0] is None or address is None:
            return
        self._published[aor] = (current[0], current[1], None)
        self._send(aor, address, refresh=True)
