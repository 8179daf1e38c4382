"""The composition root: `imapvm serve` builds every part from the configuration, starts it,
reloads it on SIGHUP and stops it gracefully on SIGTERM.

Parts: the store (IMAP or spool per mailbox), the durable outbox and its worker, the SIP front
end whose calls run the voice menus, message-waiting, and an HTTP endpoint for health and
Prometheus metrics. With no configuration at all it runs on the embedded default: one demo
mailbox (1234, password 4242) in a file spool under ./var, SIP on 127.0.0.1:5060, the installed
prompts, and it says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import resource
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from imapvm import __version__
from imapvm.adoption import AdoptedOutbox
from imapvm.audio.prompt_loader import PromptLoader
from imapvm.config.embedded import resolve_config as resolve_config  # re-exported for serve
from imapvm.config.loader import DEFAULT_VOICEMAIL_PATH, LoadedConfig
from imapvm.config.reload import reload as reload_config
from imapvm.httpd import HealthServer, PushEndpoint
from imapvm.ivr.dialplan import run_call
from imapvm.ivr.leave import target_boxes
from imapvm.ivr.recovered import deliver_unfinished
from imapvm.ivr.session import Exit, Session
from imapvm.metrics import Registry
from imapvm.mwi import config as mwi_config
from imapvm.mwi.cluster import Membership, owned
from imapvm.mwi.engine import MwiEngine, PendingChange
from imapvm.mwi.model import MwiUpdate
from imapvm.mwi.sinks import CallbackSink
from imapvm.notify.notifier import Notifier, mail_queue
from imapvm.storage.base import Counts, MailboxFull, MailboxRef, MessageRef, StoreError
from imapvm.storage.imap.push import PushHub, PushOptions
from imapvm.storage.lease import OutboxBusy, OutboxLock
from imapvm.storage.lockout import LockoutPolicy, Lockouts
from imapvm.storage.numbering import Numbering
from imapvm.storage.outbox import Outbox, message_id_of
from imapvm.storage.passwords import change_password, spooldir_passwords
from imapvm.storage.recording import JournalWriter, unfinished
from imapvm.storage.router import RoutingStore
from imapvm.telephony.channel import SipChannel
from imapvm.telephony.message_summary import MessageSummary
from imapvm.telephony.routing import RoutingConfig
from imapvm.telephony.rtp.rtcp import RtcpState
from imapvm.telephony.server import SipServer
from imapvm.telephony.server import SipSettings as SipServerSettings
from imapvm.telephony.sip.digest import log_safe
from imapvm.telephony.transport_tls import TlsSettings

log = logging.getLogger("imapvm")

#: Mailboxes recounted at once when this node takes over another's (cluster view change).
TAKEOVER_PARALLEL = 32

@dataclass
class Metrics:
    registry: Registry = field(default_factory=Registry)

    def __post_init__(self) -> None:
        r = self.registry
        self.calls = r.counter("imapvm_calls_total", "Calls handled, by purpose")
        self.active_calls = r.gauge("imapvm_active_calls", "Calls in progress")
        self.deposits = r.counter("imapvm_deposits_total", "Voicemails accepted for delivery")
        self.imap_errors = r.counter("imapvm_store_errors_total", "Store operations that failed")
        self.mwi_published = r.counter("imapvm_mwi_updates_total", "Lamp updates sent")
        self.mwi_latency = r.histogram(
            "imapvm_mwi_latency_seconds",
            "From the IMAP server's push to the recounted lamp state",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))
        self.reloads = r.counter("imapvm_reloads_total", "Configuration reloads, by result")
        self.rtp_expected = r.counter("imapvm_rtp_expected_packets_total",
                                      "RTP packets callers sent us, by sequence (ended calls)")
        self.rtp_lost = r.counter("imapvm_rtp_lost_packets_total",
                                  "RTP packets from callers that never arrived (ended calls)")
        self.rtp_peer_lost = r.counter(
            "imapvm_rtp_peer_lost_packets_total",
            "Our RTP packets the callers' RTCP reports say they lost (ended calls)")
        self.rtp_jitter = r.histogram(
            "imapvm_rtp_jitter_seconds", "Interarrival jitter of callers' RTP at the call's end",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16))
        self.sip_internal_errors = r.counter(
            "imapvm_sip_internal_errors_total",
            "Bugs caught at the SIP core's boundary (logged with a traceback)")


#: Descriptors besides the MWI watchers: SIP and RTP sockets of calls, recordings, the outbox,
#: deposit and listing connections.
FD_HEADROOM = 1024


def open_files_needed(watched: int) -> int:
    """Descriptors a node watching `watched` mailboxes over one connection each may hold."""
    return watched + FD_HEADROOM


def raise_open_files_limit(needed: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE toward the hard limit (distributions start services at 1024
    soft, while 10,000 watched mailboxes are 10,000 sockets), and say in one line when even the
    hard limit is below `needed`. Returns the (soft, hard) limits in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(soft, needed)
    if hard != resource.RLIM_INFINITY:
        target = min(hard, target)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            log.info("open files limit raised from %d to %d", soft, target)
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open files limit from %d: %s", soft, exc)
    if hard != resource.RLIM_INFINITY and hard < needed:
        log.warning("open files hard limit (RLIMIT_NOFILE) is %d but this configuration may need "
                    "%d (%d watched mailboxes + %d for calls and files): connections past it "
                    "fail; raise it (systemd LimitNOFILE=, limits.conf nofile)",
                    hard, needed, needed - FD_HEADROOM, FD_HEADROOM)
    return soft, hard


def routed_address(host: str) -> str:
    """The address this host would use towards the world (no packet is sent)."""
    if not ipaddress.ip_address(host).is_unspecified:
        return host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = "2001:db8::1" if family == socket.AF_INET6 else "192.0.2.1"
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((probe, 9))
            return str(s.getsockname()[0])
        except OSError:
            return "::1" if family == socket.AF_INET6 else "127.0.0.1"


CallFlow = Callable[["VoicemailServer", SipChannel], Awaitable[None]]


class VoicemailServer:
    def __init__(self, loaded: LoadedConfig, *, embedded: bool = False,
                 deposit_flow: CallFlow | None = None, check_flow: CallFlow | None = None,
                 adopt: Sequence[Path] = (), outbox_wait: float = 60.0,
                 ) -> None:
        self.loaded = loaded
        self.embedded = embedded
        self.outbox_wait = outbox_wait
        self.metrics = Metrics()
        paths = loaded.settings.paths
        self.store = RoutingStore(loaded.voicemail, paths.spool,
                                  loaded.settings.imap, index_dir=paths.cache / "imap")
        mwi = loaded.settings.mwi
        self.push_hub: PushHub | None = None
        if mwi.watch == "push":  # the IMAP server posts changes to /mwi/push (README, MWI)
            self.push_hub = PushHub(PushOptions(connections=mwi.push_connections,
                                                safety_recount=float(mwi.push_safety_recount)))
            self.store.imap.push = self.push_hub
            self.metrics.registry.counter(
                "imapvm_mwi_pushes_total",
                "MWI pushes on /mwi/push by result: received (accepted), unknown (no watched "
                "box of that name), refused (missing or wrong token), malformed",
                callback=self._push_counts)
        self.prompts = PromptLoader(paths.sounds, loaded.voicemail.general.prompt)
        self.deposit_flow = deposit_flow
        self.check_flow = check_flow
        self.mwi = MwiEngine(self.store.backend,
                             mwi_config.sinks(loaded.voicemail, loaded.settings.mwi),
                             mwi_config.watch_options(
                                 loaded.voicemail, on_latency=self.metrics.mwi_latency.observe,
                                 max_connections_per_server=loaded.settings.mwi.watch_connections,
                                 login_rate=loaded.settings.mwi.watch_login_rate))
        self.numbering = Numbering(self.store, lambda box: self.session.email_settings(box))
        self.deposits = _MwiDeposits(self.numbering, self)
        self.mail = mail_queue(paths.outbox, lambda: self.loaded.settings.smtp, self.store,
                               self._deleted_after_mail)
        self.notifier = Notifier(self.mail, self.store.settings)
        self.outbox = Outbox(paths.outbox, self.deposits, on_delivered=self.notifier.stored)
        self.recordings = JournalWriter(paths.outbox / "recording")
        self.outbox_lock = OutboxLock(paths.outbox)
        cluster = loaded.settings.cluster
        self.membership = Membership(
            cluster.nodes, cluster.self_url or "", interval=cluster.check_interval,
            on_change=self._view_changed) if cluster.nodes else None
        self.takeovers = 0
        #: Seconds after a takeover when the new owner PUBLISHes its state once more: by then
        #: the previous owner has seen the new view and stopped publishing (a draining node
        #: stops at once, a node that sees a peer return stops at its next health check, and a
        #: PUBLISH it had in flight has been answered), and its publication can no longer be
        #: the last the presence server received. Presence servers notify the body of the
        #: PUBLISH they just processed (Kamailio's presence_mwi does), so the last PUBLISH is
        #: what the lamp shows until the next change.
        self.reassert_after = 0.0
        if self.membership is not None:
            interval = self.membership.interval
            self.reassert_after = ((self.membership.max_misses + 1) * interval
                                   + max(1.0, 2 * interval) + 1.0)
        self._reasserts: dict[str, asyncio.TimerHandle] = {}
        self.adopted = [AdoptedOutbox(Path(d), self) for d in adopt]
        self.session: Session = Session(store=self.store, outbox=self.deposits,
                               changed=self._changed, config=loaded.voicemail,
                               exits=self._exit_target, save_password=self._save_password,
                               recordings=self.recordings)
        self.session.passwords.update(spooldir_passwords(loaded.voicemail, paths.spool))
        lock = loaded.settings.sip.lockout
        self.lockouts = Lockouts(LockoutPolicy(lock.free_failures, lock.backoff,
                                               lock.lock_after, lock.lock_seconds),
                                 shared=self.store)
        self.session.lockouts = self.lockouts
        self.sip: SipServer | None = None
        self.http: HealthServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._draining = False
        self._active: set[asyncio.Task[None]] = set()
        self._sip_told: dict[str, MessageSummary] = {}
        self.started_at = time.time()
        self.metrics.registry.gauge("imapvm_outbox_depth", "Deposits not yet in the store",
                                    callback=lambda: float(self.outbox.depth()))
        self.metrics.registry.gauge("imapvm_outbox_rejected",
                                    "Deposits set aside for good (reasons: imapvm outbox)",
                                    callback=lambda: float(self.outbox.rejected_count()))
        self.metrics.registry.gauge("imapvm_mail_rejected",
                                    "Notification e-mails refused for good and kept "
                                    "(reasons: imapvm outbox)",
                                    callback=lambda: float(self.mail.rejected_count()))
        self.metrics.registry.gauge("imapvm_mail_queue_depth",
                                    "Notification e-mails waiting to be sent (or retried)",
                                    callback=lambda: float(self.mail.depth()))
        self.metrics.registry.add(self.mail.sent)
        self.metrics.registry.add(self.mail.failures)
        self.metrics.registry.add(self.mail.refusals)

    # -- life cycle -----------------------------------------------------------------------
    def sip_settings(self) -> SipServerSettings:
        s = self.loaded.settings.sip
        unsolicited: dict[str, tuple[str, ...]] = {}
        for box, uris in self.loaded.settings.mwi.unsolicited.items():
            unsolicited[box.partition("@")[0]] = uris
        listen = s.listen[0]
        if len(s.listen) > 1:
            log.warning("several sip.listen addresses; this version listens on %s only", listen)
        return SipServerSettings(
            host=listen.host, port=listen.port,
            advertised_host=s.advertise or routed_address(listen.host),
            rtp_ports=s.rtp_ports, trusted_networks=tuple(str(n) for n in s.trusted),
            routing=RoutingConfig(check_users=s.check_users), tcp=s.tcp,
            mwi_unsolicited=unsolicited,
            mwi_presence_server=self.loaded.settings.mwi.presence_server,
            mwi_publish_domain=self.loaded.settings.mwi.publish_domain,
            mwi_publish_expires=self.loaded.settings.mwi.publish_expires,
            rate_limit=(s.rate_limit, max(1, int(2 * s.rate_limit))),
            trusted_rate_limit=(s.trusted_rate_limit, max(1, int(2 * s.trusted_rate_limit))),
            tls=self._tls_settings(),
            tls_host=s.tls_listen[0].host if s.tls_listen else None,
            tls_port=s.tls_listen[0].port if s.tls_listen else 5061,
            digest_algorithms=s.digest_algorithms,
            srtp=s.srtp, sdes_in_clear=s.sdes_in_clear, session_expires=s.session_expires,
            min_se=s.min_se,
        )

    def _tls_settings(self) -> TlsSettings | None:
        s = self.loaded.settings.sip
        if not s.tls_listen or s.tls_certificate is None or s.tls_private_key is None:
            return None
        if len(s.tls_listen) > 1:
            log.warning("several sip.tls_listen addresses; this version listens on %s only",
                        s.tls_listen[0])
        return TlsSettings(s.tls_certificate, s.tls_private_key, s.tls_ca, s.tls_verify_client)

    async def start(self) -> None:
        paths = self.loaded.settings.paths
        raise_open_files_limit(open_files_needed(self._watchable()))
        for directory in (paths.spool, paths.outbox):
            directory.mkdir(parents=True, exist_ok=True)
        await self._lock_outbox()
        await self.store.imap.prewarm()  # the TLS context, off the loop, before any call
        # Before the outbox worker runs: what a crash cut short becomes partial messages.
        found = await asyncio.to_thread(unfinished, self.recordings.directory)
        if found:
            await deliver_unfinished(self.session, found, self.outbox)
        self.recordings.start()
        self._tasks.append(asyncio.create_task(self.outbox.run(), name="outbox"))
        self._tasks.append(asyncio.create_task(self.mail.run(), name="mail"))
        for adopted in self.adopted:
            self._tasks.append(asyncio.create_task(adopted.run(), name=f"adopt {adopted}"))
        self.sip = SipServer(self.sip_settings(), self._on_call, prompt_loader=self.prompts,
                             mwi_lookup=self._mwi_lookup, credentials=self._sip_password,
                             auth_guard=_DigestGuard(self),
                             on_internal_error=self.metrics.sip_internal_errors.inc)
        self.sip.on_media_summary = self._media_summary
        try:
            await self.sip.start()
        except OSError as exc:
            listen = self.loaded.settings.sip.listen[0]
            raise OSError(exc.errno, f"SIP on {listen}: {exc.strerror or exc}") from exc
        if self.loaded.settings.mwi.sip_notify:
            self.mwi.add_sink(CallbackSink(self._publish_sip, name="sip"))
        self.mwi.add_sink(CallbackSink(self._count_update, name="metrics"))
        await self.mwi.start()
        await mwi_config.apply(self.mwi, self.loaded.voicemail)  # aliases, pollmailboxes=yes
        for spec in self._always_watched():
            await self.mwi.watch(spec)
        if self.loaded.settings.mwi.presence_server:
            await self._take_over([b for b in self._presence_boxes()
                                   if self._publishes(f"{b.mailbox}@{b.context}")])
        if self.membership is not None:
            self._tasks.append(asyncio.create_task(self.membership.run(), name="cluster"))
        http = self.loaded.settings.http.listen
        if http is not None:
            push = None
            if self.push_hub is not None:
                push = PushEndpoint(self.loaded.settings.mwi.push_token, self.push_hub.receive)
            self.http = HealthServer(self.metrics.registry.render, self.health, push)
            try:
                host, port = await self.http.start(http.host, http.port)
            except OSError as exc:
                raise OSError(exc.errno, f"HTTP on {http}: {exc.strerror or exc}") from exc
            log.info("health and metrics on http://%s:%d/healthz and /metrics%s", host, port,
                     "; MWI pushes on /mwi/push" if push is not None else "")
        host, port = self.sip.address
        if self.embedded:
            log.warning(
                "no configuration found (%s): running on the embedded default: demo mailbox "
                "1234 (password 4242) in the file spool under %s, SIP on %s:%d; call "
                "sip:1234@%s:%d to leave a message, sip:*97@%s:%d to hear it",
                DEFAULT_VOICEMAIL_PATH, paths.spool.resolve(), host, port, host, port, host, port)
        else:
            boxes = len(self.loaded.voicemail.all_effective())
            log.info("imapvm %s serving %d mailbox(es), SIP on %s:%d", __version__, boxes,
                     host, port)

    def _push_counts(self) -> dict[tuple[tuple[str, str], ...], float]:
        hub, http = self.push_hub, self.http
        counts = {"received": hub.received if hub else 0, "unknown": hub.unknown if hub else 0,
                  "refused": http.push_refused if http else 0,
                  "malformed": http.push_malformed if http else 0}
        return {(("result", name),): float(n) for name, n in counts.items()}

    def health(self) -> dict[str, object]:
        return {"ok": self.sip is not None and not self._draining, "version": __version__,
                "uptime_s": round(time.time() - self.started_at), "draining": self._draining,
                "outbox_depth": self.outbox.depth(),
                "outbox_rejected": self.outbox.rejected_count(),
                "mail_rejected": self.mail.rejected_count(), "active_calls": len(self._active),
                "embedded_default": self.embedded,
                "adopted": {str(a.directory): a.health() for a in self.adopted},
                "mwi_push": None if self.push_hub is None else {
                    "received": self.push_hub.received, "unknown": self.push_hub.unknown,
                    "refused": self.http.push_refused if self.http else 0,
                    "malformed": self.http.push_malformed if self.http else 0},
                "cluster": None if self.membership is None else {
                    "live": sorted(self.membership.live), "changes": self.membership.changes,
                    "takeovers": self.takeovers}}

    def drain(self, draining: bool) -> None:
        """Stop (True) or resume (False) taking calls: OPTIONS probes and new INVITEs get 480,
        so Kamailio's dispatcher sends new calls to the other nodes; calls in progress go on.
        SIGUSR1 drains, SIGUSR2 resumes; SIGTERM drains and then stops."""
        if draining != self._draining:
            log.warning("draining: new calls are refused (480)" if draining
                        else "no longer draining: taking calls again")
        self._draining = draining
        if self.sip is not None:
            self.sip.set_draining(draining)
        if self.membership is not None:  # its mailboxes are published by the others now
            self._tasks.append(asyncio.ensure_future(
                self.membership.set_self_live(not draining)))

    async def _lock_outbox(self) -> None:
        """Own the outbox directory, waiting a while for a node that adopted it to finish."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.outbox_wait
        told = False
        while not await asyncio.to_thread(self.outbox_lock.try_acquire):
            if loop.time() >= deadline:
                raise OutboxBusy(f"outbox {self.outbox_lock.directory} is in use by "
                                 f"{self.outbox_lock.holder()}")
            if not told:
                log.warning("outbox %s is in use by %s; waiting up to %.0f s",
                            self.outbox_lock.directory, self.outbox_lock.holder(),
                            self.outbox_wait)
                told = True
            await asyncio.sleep(0.2)  # a lock held by another process can only be polled

    async def serve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGTERM, self._stop.set)
            loop.add_signal_handler(signal.SIGINT, self._stop.set)
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
            loop.add_signal_handler(signal.SIGUSR1, self.drain, True)
            loop.add_signal_handler(signal.SIGUSR2, self.drain, False)
        await self._stop.wait()

    def request_stop(self) -> None:
        self._stop.set()

    async def stop(self, grace: float = 30.0) -> None:
        """Stop taking calls, let the running ones finish (up to `grace` s), flush the outbox,
        close everything."""
        self.drain(True)
        if self._active:
            log.info("waiting for %d call(s) to finish", len(self._active))
            await asyncio.wait(self._active, timeout=grace)
        await self.recordings.close()
        if not await self.outbox.flush(grace):
            log.warning("%d deposit(s) still in the outbox %s; they are delivered at the next "
                        "start", self.outbox.depth(), self.loaded.settings.paths.outbox)
        self.outbox.stop()
        if not await self.mail.flush(min(grace, 5.0)):
            log.warning("%d notification e-mail(s) not sent yet; they are retried at the next "
                        "start", self.mail.depth())
        self.mail.stop()
        for handle in self._reasserts.values():
            handle.cancel()
        self._reasserts.clear()
        await self.mwi.stop()
        if self.sip is not None:
            await self.sip.close()
        if self.http is not None:
            await self.http.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.store.aclose()
        self.outbox_lock.release()
        log.info("stopped")

    async def reload(self) -> bool:
        """SIGHUP: re-read both files; apply them if they have no errors. Calls keep running."""
        result = reload_config(self.loaded)
        for d in result.diagnostics:
            log.warning("reload: %s", d)
        if not result.applied:
            self.metrics.reloads.inc(result="refused")
            log.error("reload refused: the configuration has errors; still running the old one")
            return False
        diff = result.diff
        self._use(result.active)
        await mwi_config.apply(self.mwi, result.active.voicemail)
        for spec in self._always_watched():  # mailboxes added by the reload
            await self.mwi.watch(spec)
        if self.sip is not None:
            self.sip.reload_tls()  # a renewed certificate, same files
        self.metrics.reloads.inc(result="applied")
        log.info("reloaded: %s", json.dumps(diff.to_json(), default=str))
        restart = ("sip.", "http.", "paths.", "mwi.watch", "mwi.push_")
        if any(k.startswith(restart) for k in diff.settings):
            log.warning("sip/http/paths/MWI watch changes take effect at the next restart: %s",
                        ", ".join(k for k in diff.settings if k.startswith(restart)))
        return True

    def _use(self, active: LoadedConfig) -> None:
        """Hand a freshly built configuration, and a prompt loader made from it, to every part
        that reads them, so that nothing keeps a stale copy; calls in progress finish with what
        they started with."""
        self.loaded = active
        self.store.config = active.voicemail
        self.session.config = active.voicemail
        # Passwords changed by phone are in the files by now: the files are the truth again.
        self.session.passwords = spooldir_passwords(active.voicemail, active.settings.paths.spool)
        self.prompts = PromptLoader(active.settings.paths.sounds, active.voicemail.general.prompt)
        if self.sip is not None:
            self.sip.prompt_loader = self.prompts

    # -- calls ----------------------------------------------------------------------------
    async def _on_call(self, channel: SipChannel) -> None:
        if self._draining:
            return  # not answered: the caller gets 480 and the PBX tries elsewhere
        task = asyncio.current_task()
        assert task is not None
        self._active.add(task)
        purpose = channel.target.purpose
        self.metrics.calls.inc(purpose=purpose)
        self.metrics.active_calls.set(len(self._active))
        try:
            flow = self.deposit_flow if purpose == "deposit" else self.check_flow
            if flow is None:
                log.error("no %s flow configured; refusing the call", purpose)
                return
            await flow(self, channel)
        except StoreError as exc:
            self.metrics.imap_errors.inc()
            log.error("call %s: storage failed: %s", channel.handle, exc)
        finally:
            self._active.discard(task)
            self.metrics.active_calls.set(len(self._active))

    def _media_summary(self, rtcp: RtcpState) -> None:
        """An ended call's RTP quality (its RTCP view) into /metrics."""
        m = self.metrics
        m.rtp_expected.inc(rtcp.expected)
        m.rtp_lost.inc(rtcp.lost)
        m.rtp_peer_lost.inc(max(0, rtcp.peer.cumulative_lost))
        if rtcp.expected:
            m.rtp_jitter.observe(rtcp.jitter_ms / 1000)

    def _sip_password(self, username: str) -> str | None:
        """Digest secret of a phone outside the trusted networks: `[sip.credentials]` for its
        mailbox; the mailbox PIN only with `sip.pin_as_sip_password` (an empty secret never
        authenticates)."""
        box = self.mailbox_ref(username)
        if box is None:
            return None
        sip = self.loaded.settings.sip
        for key in (username, f"{box.mailbox}@{box.context}", box.mailbox):
            if sip.credentials.get(key):
                return sip.credentials[key]
        if sip.pin_as_sip_password:
            return self.session.password(box) or None
        return None

    def _exit_target(self, exit_: Exit) -> str | None:
        """voicemail.conf's exits (operator, *, callback, outdial) as a SIP URI to REFER to."""
        template = self.loaded.settings.sip.exit_uri
        if template is None:
            return None
        return template.replace("{extension}", exit_.extension).replace(
            "{context}", exit_.context)

    async def _save_password(self, box: MailboxRef, password: str) -> None:
        where = await change_password(self.loaded.voicemail, self.loaded.settings.paths.spool,
                                      box, password)
        log.info("password of %s changed by phone; saved by %s", box, where)

    async def _deleted_after_mail(self, box: MailboxRef, ref: MessageRef) -> None:
        """delete=yes: the voicemail was e-mailed; delete it and let the lamp follow."""
        await self.store.delete(box, [ref])
        self.mwi.refresh(box)

    # -- message waiting ------------------------------------------------------------------
    def _watchable(self) -> int:
        """How many watcher connections this configuration can come to hold: every mailbox
        (any may get a subscriber), within the per-server limit; push mode holds a few."""
        mwi = self.loaded.settings.mwi
        if mwi.watch == "push":
            return mwi.push_connections
        return min(mwi.watch_connections, len(list(self.loaded.voicemail.all_effective())))

    def _always_watched(self) -> list[str]:
        """Mailboxes watched from the start besides those `mwi_config.apply` watches
        (pollmailboxes=yes): all when a sink other than SIP (externnotify, AMI, webhook) wants
        every change, and those with unsolicited NOTIFY targets. Others are watched once a
        phone subscribes."""
        settings = self.loaded.settings.mwi
        everything = bool(settings.webhook_url or settings.ami
                          or self.loaded.voicemail.general.text("externnotify"))
        out = []
        for ms in self.loaded.voicemail.all_effective():
            box = f"{ms.mailbox}@{ms.context}"
            unsolicited = box in settings.unsolicited or ms.mailbox in settings.unsolicited
            if everything or unsolicited:
                out.append(box)
        return out

    async def _mwi_lookup(self, mailbox: str) -> MessageSummary | None:
        """A phone subscribed: watch its mailbox from now on and tell it the counts."""
        box = self.mailbox_ref(mailbox)
        if box is None:
            return MessageSummary(0, 0)  # no such mailbox: truly nothing waiting
        name = await self.mwi.watch(box)
        update = self.mwi.current(name)
        if update is not None:
            summary = _summary(update)
        else:
            try:
                c = await self.store.counts(box)
            except StoreError as exc:  # unknown is not zero: the first real count is sent
                log.warning("MWI lookup for %s failed: %s", mailbox, exc)
                return None
            summary = MessageSummary(new=c.mwi_new, old=c.old, urgent_new=c.urgent)
        self._sip_told[mailbox] = summary
        return summary

    async def _publish_sip(self, update: MwiUpdate) -> None:
        if self.sip is None:
            return
        summary = _summary(update)
        presence = self._publishes(f"{update.mailbox}@{update.context}")
        for name in dict.fromkeys((update.mailbox, update.name)):
            if self._sip_told.get(name) != summary:  # phones hear changes only, never repeats
                self._sip_told[name] = summary
                # the presence server knows mailboxes by number (sip:1234@publish_domain)
                self.sip.publish_mwi(name, summary,
                                     presence=presence and name == update.mailbox)

    # -- several nodes: one presence publisher per mailbox ------------------------------------
    def _publishes(self, box: str) -> bool:
        """Whether this node PUBLISHes `box` ("1234@default") to the presence server."""
        if not self.loaded.settings.mwi.presence_server:
            return False
        return self.membership is None or self.membership.owns(box)

    def _presence_boxes(self) -> list[MailboxRef]:
        return [MailboxRef(ms.mailbox, ms.context)
                for ms in self.loaded.voicemail.all_effective()]

    async def _take_over(self, boxes: list[MailboxRef]) -> None:
        """Watch `boxes` from now on, recount them and publish their state to the presence
        server at once (their previous publisher is gone, or this node just started). Boxes
        are counted side by side (TAKEOVER_PARALLEL at a time): a dead node's thousands of
        mailboxes must be published again within seconds, not one round trip after another."""
        gate = asyncio.Semaphore(TAKEOVER_PARALLEL)

        async def one(box: MailboxRef) -> None:
            # Whatever the tracker publishes from now on reaches the presence server, even a
            # state this node already told its own subscribers while it was not the owner.
            self._sip_told.pop(box.mailbox, None)
            async with gate:
                try:
                    name = await self.mwi.watch(box)
                    # The count goes through the tracker, like the watcher's: a count that read
                    # the server before a change the watcher has already published is dropped
                    # there, never published over it (the lamp would stay one change behind).
                    await self.mwi.recount(box)
                except StoreError as exc:
                    log.warning("MWI takeover of %s: cannot count it yet (%s); published when "
                                "the store answers", box, exc)
                    return
            if not self._publishes(f"{box.mailbox}@{box.context}"):
                return  # the view changed again meanwhile
            update = self.mwi.current(name)
            if update is None:
                return  # not counted yet: the watcher's first count publishes it
            # What the tracker holds now, the newest this node knows, goes to the presence
            # server even if it did not change (the tracker publishes changes only).
            summary = _summary(update)
            self._sip_told[box.mailbox] = summary
            if self.sip is not None:
                self.sip.publish_mwi(box.mailbox, summary, presence=True)

        await asyncio.gather(*(one(box) for box in boxes))
        if self.membership is not None:
            loop = asyncio.get_running_loop()
            for box in boxes:
                old = self._reasserts.pop(box.mailbox, None)
                if old is not None:
                    old.cancel()
                self._reasserts[box.mailbox] = loop.call_later(
                    self.reassert_after, self._reassert, box)
        self.takeovers += 1

    def _reassert(self, box: MailboxRef) -> None:
        """The new owner's last word after a takeover (see `reassert_after`)."""
        self._reasserts.pop(box.mailbox, None)
        if self.sip is None or not self._publishes(f"{box.mailbox}@{box.context}"):
            return
        update = self.mwi.current(str(box))
        if update is None:
            return  # never counted: its first count is published when it comes
        summary = _summary(update)
        self._sip_told[box.mailbox] = summary
        self.sip.republish_mwi(box.mailbox, summary)

    async def _view_changed(self, old: frozenset[str], new: frozenset[str]) -> None:
        assert self.membership is not None
        me = self.membership.me
        boxes = {f"{b.mailbox}@{b.context}": b for b in self._presence_boxes()}
        before, after = owned(boxes, me, old), owned(boxes, me, new)
        for key in sorted(before - after):
            if self.sip is not None:
                self.sip.withdraw_mwi(boxes[key].mailbox)
        gained = [boxes[k] for k in sorted(after - before)]
        if gained:
            log.info("publishing %d more mailbox(es) after the cluster view changed",
                     len(gained))
            await self._take_over(gained)

    async def _count_update(self, update: MwiUpdate) -> None:
        self.metrics.mwi_published.inc(stale=str(update.stale).lower())

    async def _changed(self, box: MailboxRef) -> None:
        """A flow changed `box` (VoiceMailMain ended, a deposit was queued): recount now, for
        the spool has no push and IMAP's comes half a second later. Deposits still on their
        way are pending changes of the engine, so this recount cannot hide them."""
        self.mwi.refresh(box)

    def mailbox_ref(self, text: str) -> MailboxRef | None:
        number, _, context = text.partition("@")
        found = self.loaded.voicemail.find(number, context or None)
        return MailboxRef(found.number, found.context) if found else None


class _DigestGuard:
    """The SIP core's view of the lockouts: digest users are mailbox numbers."""

    def __init__(self, server: VoicemailServer) -> None:
        self._server = server

    def expect(self, username: str) -> None:
        """Credentials for ``username`` will follow the 401: read what other nodes counted."""
        box = self._server.mailbox_ref(username)
        if box is not None:
            self._server.lockouts.refresh_soon(box)  # at most every 5 s per mailbox

    def allowed(self, username: str, source: str, now: float) -> bool:
        box = self._server.mailbox_ref(username)
        lockouts = self._server.lockouts
        if box is not None:  # for the next request: a request is never held up for it
            lockouts.refresh_soon(box)
        wait = lockouts.wait(box, source)
        if wait > 0:
            log.warning("auth refused (locked): source=%s user=%s via=sip-digest wait=%d",
                        source, box or log_safe(username), int(wait) + 1)
        return wait <= 0

    def failed(self, username: str, source: str, now: float) -> None:
        box = self._server.mailbox_ref(username)
        event = self._server.lockouts.note_failure(box, source, "sip-digest", username)
        if box is not None and event is not None:
            self._server.lockouts.failure_soon(box, event)

    def succeeded(self, username: str, source: str, now: float) -> None:
        box = self._server.mailbox_ref(username)
        if box is not None and self._server.lockouts.failures(box):
            self._server.lockouts.success_soon(box)


def _summary(update: MwiUpdate) -> MessageSummary:
    return MessageSummary(new=update.mwi_new, old=update.old, urgent_new=update.urgent)


class _MwiDeposits:
    """Between the flows, the outbox and the store, so the lamp is right at every moment.

    `submit` (the flows' side) puts the deposit in the outbox, durable, and registers a pending
    change with the MWI engine: the lamp lights at once and stays lit across recounts and
    reconnects. `deposit` / `contains_message_id` (the outbox worker's side, later) deliver it
    to the store inside the pending change's `delivering()`, which settles it: no second update
    and no blink. A deposit refused for good (mailbox full) drops its change."""

    def __init__(self, store: Numbering, server: VoicemailServer) -> None:
        self.store = store
        self._server = server
        self._pending: dict[str, PendingChange] = {}  # by Message-ID

    async def submit(self, box: MailboxRef, email: bytes, *, urgent: bool = False) -> str:
        # Registered before the outbox has it: its worker may deliver it at once.
        mid = message_id_of(email)
        change = self._server.mwi.pending(box, Counts(urgent=1) if urgent else Counts(new=1))
        self._pending[mid] = change
        try:
            item = await self._server.outbox.submit(box, email, urgent=urgent)
        except BaseException:
            self._pending.pop(mid, None)
            change.drop()
            raise
        self._server.metrics.deposits.inc()
        return item

    async def deposit(self, box: MailboxRef, email: bytes, *, urgent: bool = False
                      ) -> MessageRef:
        change = self._pending.pop(message_id_of(email), None)
        if change is None:  # queued by an earlier run of the server
            return await self.store.deposit(box, email, urgent=urgent)
        try:
            async with change.delivering():
                return await self.store.deposit(box, email, urgent=urgent)
        except MailboxFull:
            change.drop()
            raise
        except BaseException:
            self._pending[message_id_of(email)] = change  # the outbox tries again
            raise

    async def contains_message_id(self, box: MailboxRef, message_id: str) -> MessageRef | None:
        ref = await self.store.contains_message_id(box, message_id)
        change = self._pending.pop(message_id, None) if ref is not None else None
        if change is not None:
            async with change.delivering():
                pass  # it had landed before the connection was lost
        return ref


def _default_greeting(server: VoicemailServer) -> Literal["busy", "unavailable"] | None:
    choice = server.loaded.settings.sip.default_greeting
    return None if choice == "none" else choice


async def deposit_call(server: VoicemailServer, channel: SipChannel) -> None:
    """A call for a mailbox (forwarded on busy or no answer): leave a message, with the
    VoiceMail() options and recipients the call carries.

    When none of the mailboxes the call names exists, it is refused with 404 before
    answering (as Asterisk's VoiceMail() fails without a prompt) and logged: the PBX can
    route the call elsewhere."""
    target = channel.target
    if target.purpose == "deposit" and target.mailbox and not target_boxes(channel,
                                                                            server.session):
        log.warning("call %s from %s (%s): no mailbox %s, refused with 404", channel.handle,
                    channel.caller.number or "anonymous", channel.caller.address or "-",
                    log_safe(target.mailbox))
        if server.sip is not None and server.sip.reject_call(channel, 404):
            return
    await run_call(channel, server.session, _default_greeting(server))


async def check_call(server: VoicemailServer, channel: SipChannel) -> None:
    """A call to a check-messages user (`*97`): VoiceMailMain; or VoiceMailPlayMsg."""
    await run_call(channel, server.session, _default_greeting(server))


def default_flows() -> tuple[CallFlow, CallFlow | None]:
    """The flows `imapvm serve` runs: (leave a message, check messages)."""
    return deposit_call, check_call


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log shippers want."""

    def format(self, record: logging.LogRecord) -> str:
        data = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
