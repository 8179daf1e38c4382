"""SIP over TLS (RFC 3261 §26, RFC 5630's `transport=tls`) on asyncio's ``ssl``.

The listening side is SIP over TCP with a TLS handshake first: the same framing, one reader per
connection, responses and in-dialog requests sent back on the connection they came in on.
Requests we start towards a TLS peer (NOTIFY to a phone that subscribed over TLS, PUBLISH to a
presence server) reuse the open connection to that address; only when there is none do we open
one, verified against ``tls_ca`` when it is set (without it the connection is encrypted but the
peer is not authenticated, which the log says once).

``reload()`` re-reads the certificate, key and CA files into the live contexts: connections
made afterwards use them, established ones keep theirs (SIGHUP after a certificate renewal).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .sip.kinds import SipTransport
from .transport import Address, MessageHandler, TcpSipTransport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TlsSettings:
    certificate: Path
    private_key: Path
    ca: Path | None = None  # peers' CA: client certificates and connections we open
    verify_client: bool = False  # require a client certificate signed by ``ca``


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """The listening context (TLS 1.2 or newer); raises OSError/ssl.SSLError naming the file."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(ctx, settings)
    return ctx


def client_context(settings: TlsSettings) -> ssl.SSLContext:
    """For connections we open; by IP address, so names are not checked, the chain is."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    if settings.ca is not None:
        ctx.load_verify_locations(cafile=str(settings.ca))
    else:
        ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(settings.certificate), str(settings.private_key))
    return ctx


def _load(ctx: ssl.SSLContext, settings: TlsSettings) -> None:
    try:
        ctx.load_cert_chain(str(settings.certificate), str(settings.private_key))
    except (OSError, ssl.SSLError) as exc:
        raise ssl.SSLError(f"TLS certificate {settings.certificate} / key "
                           f"{settings.private_key}: {exc}") from exc
    if settings.ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(settings.ca))
        except (OSError, ssl.SSLError) as exc:
            raise ssl.SSLError(f"TLS CA {settings.ca}: {exc}") from exc
    if settings.verify_client:
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif settings.ca is not None:
        ctx.verify_mode = ssl.CERT_OPTIONAL


@dataclass(frozen=True)
class CertificateInfo:
    subject: str
    names: tuple[str, ...]
    not_after: datetime

    @property
    def days_left(self) -> int:
        return (self.not_after - datetime.now(UTC)).days


def certificate_info(path: Path) -> CertificateInfo:
    """Names and expiry of a PEM certificate (for ``imapvm doctor``); ValueError if unreadable."""
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:  # pragma: no cover - every CPython has it
        raise ValueError("this Python cannot decode certificates")
    try:
        cert = decode(str(path))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"{path}: not a PEM certificate ({exc})") from exc
    subject = ", ".join(f"{k}={v}" for rdn in cert.get("subject", ()) for k, v in rdn)
    names = tuple(f"{kind}:{value}" for kind, value in cert.get("subjectAltName", ()))
    not_after = datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), UTC)
    return CertificateInfo(subject, names, not_after)


class TlsSipTransport(TcpSipTransport):
    """SIP over TLS: the TCP transport with TLS contexts, and connections of our own when a
    TLS peer we must reach has none open."""

    name: SipTransport = "TLS"

    def __init__(self, on_message: MessageHandler, settings: TlsSettings,
                 max_message_bytes: int = 65535) -> None:
        super().__init__(on_message, max_message_bytes)
        self.settings = settings
        self.server_ctx = server_context(settings)
        self.client_ctx = client_context(settings)
        self._queued: dict[Address, list[bytes]] = {}
        self._warned_unverified = False

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, ssl=self.server_ctx,
                                                  ssl_handshake_timeout=10)

    def reload(self, settings: TlsSettings | None = None) -> None:
        """Load the (renewed) files into the live contexts; raises ssl.SSLError on bad files,
        leaving the old certificate in use."""
        settings = settings or self.settings
        fresh_server = server_context(settings)  # proves the files first
        fresh_client = client_context(settings)
        del fresh_server, fresh_client
        _load(self.server_ctx, settings)
        self.client_ctx.load_cert_chain(str(settings.certificate), str(settings.private_key))
        if settings.ca is not None:
            self.client_ctx.load_verify_locations(cafile=str(settings.ca))
        self.settings = settings

    def send(self, data: bytes, address: Address) -> None:
        writer = self._writers.get(address)
        if writer is not None and not writer.is_closing():
            writer.write(data)
            return
        queued = self._queued.get(address)
        if queued is not None:  # a connection is being opened: send when it is up
            queued.append(data)
            return
        self._queued[address] = [data]
        task = asyncio.get_running_loop().create_task(self._connect(address))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, address: Address) -> None:
        if self.settings.ca is None and not self._warned_unverified:
            self._warned_unverified = True
            log.warning("SIP TLS: connecting to peers without [sip] tls_ca: encrypted, but the "
                        "peer's certificate is not verified")
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(address[0], address[1], ssl=self.client_ctx), 10)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            dropped = len(self._queued.pop(address, []))
            log.info("SIP TLS connection to %s:%d failed: %s; %d message(s) dropped",
                     address[0], address[1], exc, dropped)
            return
        for data in self._queued.pop(address, []):
            writer.write(data)
        await self._serve(reader, writer)
