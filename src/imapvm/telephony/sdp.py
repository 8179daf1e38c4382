"""SDP (RFC 4566) parsing and the answerer side of offer/answer (RFC 3264) for G.711 audio.

imapvm only ever answers: it takes the caller's offer, picks G.722 when the caller offers it
and we allow it (wideband beats narrowband whatever the order), else the first G.711 codec the
caller listed that we also allow (the offerer's preference, RFC 3264 §6.1), keeps
telephone-event if offered, and answers every m-line (unusable ones with port 0) so the
answer lines up with the offer. G.722's rtpmap says 8000 Hz (RFC 3551 §4.5.2).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import secrets
from dataclasses import dataclass, field
from typing import Literal

STATIC_PAYLOADS = {0: "PCMU", 8: "PCMA", 9: "G722"}
PREFERRED = ("G722",)  # chosen whenever offered and allowed
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_ANSWER_DIRECTION = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}


class SdpError(ValueError):
    """The body is not SDP we can read."""


@dataclass
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None
    rtpmap: dict[int, str] = field(default_factory=dict)  # pt -> "PCMU/8000"
    fmtp: dict[int, str] = field(default_factory=dict)
    direction: str | None = None
    ptime: int | None = None
    crypto: list[str] = field(default_factory=list)  # a=crypto values (RFC 4568), in order


@dataclass
class SessionDescription:
    origin: str = ""
    connection: str | None = None
    direction: str = "sendrecv"
    media: list[MediaDescription] = field(default_factory=list)


@dataclass(frozen=True)
class NegotiatedMedia:
    """What the RTP side needs: where to send, which payload types, and the direction."""

    remote_host: str
    remote_port: int
    payload_type: int
    encoding: str
    dtmf_payload_type: int | None
    ptime_ms: int
    direction: str  # of the remote side, as offered (sendonly = we are put on hold)
    srtp: SrtpKeys | None = None  # SDES keys when the stream is RTP/SAVP

    @property
    def on_hold(self) -> bool:
        return self.direction in ("sendonly", "inactive") or self.remote_host in ("0.0.0.0", "::")


SRTP_SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
SrtpPolicy = Literal["optional", "required", "off"]


@dataclass(frozen=True)
class SrtpKeys:
    """SDES (RFC 4568) for one stream: the offer's tag and suite, its key (what the caller
    encrypts with) and ours (what we encrypt with, sent in our answer). Keys are 30 bytes:
    16 of AES key, 14 of salt."""

    tag: int
    suite: str
    remote_key: bytes
    local_key: bytes

    def __repr__(self) -> str:  # never print keys (logs, test failures)
        return f"SrtpKeys(tag={self.tag}, suite={self.suite})"


def _sdes(media: MediaDescription) -> SrtpKeys | None:
    """The first a=crypto line we can use: a suite we have, one inline key of 30 bytes, no
    MKI. Our own key is fresh for every answer."""
    for value in media.crypto:
        parts = value.split()
        if len(parts) < 3 or not parts[0].isdigit() or parts[1] not in SRTP_SUITES:
            continue
        params = parts[2]
        if not params.startswith("inline:") or ";" in params:
            continue  # several keys (RFC 4568 §9.2) are not supported
        key_b64, *rest = params[len("inline:"):].split("|")
        if any(":" in r for r in rest):
            continue  # an MKI
        try:
            key = base64.b64decode(key_b64, validate=True)
        except (ValueError, binascii.Error):
            continue
        if len(key) != 30 or len(parts) > 3:
            continue  # wrong size, or session parameters we do not implement
        return SrtpKeys(int(parts[0]), parts[1], key, secrets.token_bytes(30))
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _small_int(text: str, digits: int = 5) -> int | None:
    """An ASCII decimal of at most ``digits`` digits ("²" and 10,000-digit ports are not)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= digits else None


def _payload_type(text: str) -> int | None:
    number = _small_int(text, 3)
    return number if number is not None and number <= MAX_PAYLOAD_TYPE else None


def _connection_address(value: str) -> str:
    """The address of a c= line; "" when it is none we would send media to (the stream is
    then refused with 488, not the whole request with 400)."""
    parts = value.split()
    if len(parts) < 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        return ""
    host = parts[2].split("/")[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return ""  # a host name would need a blocking lookup on every packet: refuse
    if (ip.version == 4) != (parts[1] == "IP4") or ip.is_multicast or (
        ip.version == 4 and (ip.is_reserved or ip == ipaddress.IPv4Address("255.255.255.255"))
    ):
        return ""  # multicast, broadcast, reserved or the wrong family: not a phone
    return host


# RTP payload types are 7 bits (RFC 3550 §5.1); media to ports below 1024 would be aimed at
# the services of the caller's host (or ours, with c=127.0.0.1), never at a phone.
MAX_PAYLOAD_TYPE = 127
MIN_MEDIA_PORT = 1024


def parse_sdp(body: bytes) -> SessionDescription:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError("SDP is not UTF-8") from exc
    sdp = SessionDescription()
    current: MediaDescription | None = None
    for line in text.replace("\r\n", "\n").split("\n"):
        line = line.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"bad SDP line {line[:40]!r}")
        kind, value = line[0], line[2:]
        if kind == "o":
            sdp.origin = value
        elif kind == "c":
            if current is None:
                sdp.connection = _connection_address(value)
            else:
                current.connection = _connection_address(value)
        elif kind == "m":
            parts = value.split()
            port = _small_int(parts[1].split("/")[0], 6) if len(parts) >= 4 else None
            if port is None:
                raise SdpError(f"bad m= line {value[:40]!r}")
            current = MediaDescription(parts[0], port, parts[2], parts[3:])
            sdp.media.append(current)
        elif kind == "a":
            _attribute(sdp, current, value)
    return sdp


def _attribute(sdp: SessionDescription, media: MediaDescription | None, value: str) -> None:
    name, _, arg = value.partition(":")
    if name in DIRECTIONS:
        if media is None:
            sdp.direction = name
        else:
            media.direction = name
    elif media is None:
        return
    elif name in ("rtpmap", "fmtp"):
        pt, _, rest = arg.partition(" ")
        number = _small_int(pt, 3)
        if number is not None:
            (media.rtpmap if name == "rtpmap" else media.fmtp)[number] = rest.strip()
    elif name == "ptime":
        media.ptime = _small_int(arg.strip(), 4)
    elif name == "crypto" and len(media.crypto) < 16:
        media.crypto.append(arg.strip())


def _encoding_of(media: MediaDescription, pt: int) -> tuple[str, int]:
    if pt in media.rtpmap:
        parts = media.rtpmap[pt].split("/")
        rate = (_small_int(parts[1], 6) or 0) if len(parts) > 1 else 0
        return parts[0].upper(), rate
    if pt in STATIC_PAYLOADS:
        return STATIC_PAYLOADS[pt], 8000
    return "", 0


def negotiate(
    offer: SessionDescription, codecs: tuple[str, ...] = ("PCMU", "PCMA"),
    srtp: SrtpPolicy = "optional", secure: bool = False, sdes_in_clear: bool = False,
) -> tuple[int, NegotiatedMedia] | None:
    """Index of the m-line we accept and the media parameters; None when nothing fits (488).

    ``srtp``: "off" takes RTP/AVP only, "required" RTP/SAVP only, "optional" either.
    RTP/SAVP needs an a=crypto line we can use, and a signalling path that hides the keys:
    ``secure`` (the INVITE came over TLS), unless ``sdes_in_clear`` allows plain UDP/TCP.
    """
    allowed = {c.upper() for c in codecs}
    for index, media in enumerate(offer.media):
        proto = media.proto.upper()
        if media.media != "audio" or media.port == 0 or proto not in ("RTP/AVP", "RTP/SAVP"):
            continue
        keys = None
        if proto == "RTP/SAVP":
            if srtp == "off" or not (secure or sdes_in_clear):
                continue
            keys = _sdes(media)
            if keys is None:
                continue
        elif srtp == "required":
            continue
        if any(f.isdigit() and _payload_type(f) is None for f in media.formats) or not (
            MIN_MEDIA_PORT <= media.port <= 65535
        ):
            continue  # a payload type no RTP header can carry, an absurd port: refused
        chosen: tuple[int, str] | None = None
        dtmf: int | None = None
        for fmt in media.formats:
            pt = _payload_type(fmt)
            if pt is None:
                continue
            name, rate = _encoding_of(media, pt)
            if name == "TELEPHONE-EVENT" and rate == 8000 and dtmf is None:
                dtmf = pt
            elif name in allowed and rate == 8000 and (
                chosen is None or (name in PREFERRED and chosen[1] not in PREFERRED)
            ):
                chosen = (pt, name)
        if chosen is None:
            continue
        host = media.connection if media.connection is not None else offer.connection
        if not host or not _is_ip(host):
            continue  # no usable c= line (see _connection_address)
        ptime = media.ptime if media.ptime in (10, 20, 30, 40) else 20
        direction = media.direction or offer.direction
        return index, NegotiatedMedia(host, media.port, chosen[0], chosen[1], dtmf, ptime,
                                      direction, keys)
    return None


def build_answer(
    offer: SessionDescription,
    accepted_index: int,
    media: NegotiatedMedia,
    local_host: str,
    local_port: int,
    session_id: int,
    version: int,
) -> bytes:
    """The SDP answer: our address and port for the accepted stream, port 0 for the others."""
    family = "IP6" if ":" in local_host else "IP4"
    lines = [
        "v=0",
        f"o=imapvm {session_id} {version} IN {family} {local_host}",
        "s=imapvm",
        f"c=IN {family} {local_host}",
        "t=0 0",
    ]
    for index, m in enumerate(offer.media):
        if index != accepted_index:
            lines.append(f"m={m.media} 0 {m.proto} {' '.join(m.formats) or '0'}")
            continue
        pts = [str(media.payload_type)]
        if media.dtmf_payload_type is not None:
            pts.append(str(media.dtmf_payload_type))
        proto = "RTP/SAVP" if media.srtp is not None else "RTP/AVP"
        lines.append(f"m=audio {local_port} {proto} {' '.join(pts)}")
        lines.append(f"a=rtpmap:{media.payload_type} {media.encoding}/8000")
        if media.srtp is not None:
            key = base64.b64encode(media.srtp.local_key).decode()
            lines.append(f"a=crypto:{media.srtp.tag} {media.srtp.suite} inline:{key}")
        if media.dtmf_payload_type is not None:
            lines.append(f"a=rtpmap:{media.dtmf_payload_type} telephone-event/8000")
            lines.append(f"a=fmtp:{media.dtmf_payload_type} 0-16")
        lines.append(f"a=ptime:{media.ptime_ms}")
        lines.append(f"a={_ANSWER_DIRECTION.get(media.direction, 'sendrecv')}")
    return ("\r\n".join(lines) + "\r\n").encode()


def build_offer(
    local_host: str, local_port: int, session_id: int, version: int,
    codecs: tuple[str, ...] = ("PCMU", "PCMA"), dtmf_payload_type: int = 101,
) -> bytes:
    """Our offer, for a re-INVITE or INVITE that arrived without SDP (offer in our 200)."""
    family = "IP6" if ":" in local_host else "IP4"
    pts = {"PCMU": 0, "PCMA": 8, "G722": 9}
    chosen = [pts[c.upper()] for c in codecs if c.upper() in pts]
    lines = [
        "v=0",
        f"o=imapvm {session_id} {version} IN {family} {local_host}",
        "s=imapvm",
        f"c=IN {family} {local_host}",
        "t=0 0",
        f"m=audio {local_port} RTP/AVP {' '.join(map(str, chosen))} {dtmf_payload_type}",
        *(f"a=rtpmap:{pt} {STATIC_PAYLOADS[pt]}/8000" for pt in chosen),
        f"a=rtpmap:{dtmf_payload_type} telephone-event/8000",
        f"a=fmtp:{dtmf_payload_type} 0-16",
        "a=ptime:20",
        "a=sendrecv",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()
