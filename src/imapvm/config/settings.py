"""imapvm.toml: what Asterisk keeps outside voicemail.conf (SIP, MWI sinks, paths, HTTP).

Every key is optional; a missing file means the defaults below. Validation names the offending key
(`sip.listen[1]`) and, when it can find it, the line, and reports every problem at once. Command-
line flags override the file by dotted key and go through the very same validation, so a bad flag
reads like a bad file entry.

```toml
[sip]
listen = ["0.0.0.0:5060", "[::]:5060"]
trusted = ["127.0.0.1/32", "192.0.2.0/24"]
advertise = "192.0.2.5"          # Contact/SDP address when listening on a wildcard
rtp_ports = "10000-20000"
check_users = ["*97", "vm"]      # Request-URI users that reach VoiceMailMain
tcp = true
exit_uri = "sip:{extension}@192.0.2.10"   # key 0 -> o, key * -> a, as Asterisk's dialplan
default_greeting = "unavailable"  # no cause given: "unavailable", "busy" or "none"

[mwi]
sip_notify = true
webhook_url = "https://hooks.example.com/mwi"
# watch = "push"                 # Dovecot posts changes to /mwi/push (contrib/dovecot/)
# push_token = "..."             # the bearer token Dovecot's Lua script sends
[mwi.unsolicited]
"1234" = ["sip:1234@192.0.2.20:5060"]   # phones told without subscribing
[mwi.ami]
host = "127.0.0.1"
port = 5038
username = "imapvm"
secret = "s3cret"

[paths]
spool = "/var/spool/asterisk/voicemail"
outbox = "/var/spool/imapvm/outbox"
sounds = "/usr/share/asterisk/sounds/en_US_f_Allison"
cache = "/var/cache/imapvm"      # IMAP folder indexes (rebuildable)

[http]
listen = "127.0.0.1:9180"

[imap]
oauth2_token_command = "/usr/local/bin/m365-token {user}"   # XOAUTH2 instead of passwords
# gssapi = true               # or Kerberos, with the credentials in KRB5CCNAME

[smtp]                        # voicemail to e-mail by SMTP instead of voicemail.conf's mailcmd
host = "smtp.example.com"
port = 587
starttls = true
username = "voicemail@example.com"
password = "s3cret"
```
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import shlex
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, cast
from urllib.parse import urlparse

from imapvm.config.diagnostics import Diagnostics, Location, did_you_mean

DEFAULT_SETTINGS_PATH = Path("/etc/imapvm/imapvm.toml")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class LockoutSettings:
    """Failed logins (phone PIN, SIP digest) per mailbox across calls, sources and nodes."""

    free_failures: int = 3
    backoff: float = 30.0
    lock_after: int = 10
    lock_seconds: float = 3600.0


@dataclass(frozen=True)
class SipSettings:
    listen: tuple[Endpoint, ...] = (Endpoint("0.0.0.0", 5060),)
    trusted: tuple[IPNetwork, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    """Peers allowed to send INVITE and SUBSCRIBE: the PBX, never the whole Internet."""
    advertise: str | None = None
    """Address put in Contact and SDP; needed when listening on a wildcard address (default:
    the address the host routes from)."""
    rtp_ports: tuple[int, int] = (10000, 20000)
    check_users: tuple[str, ...] = ("*97", "vm")
    """Request-URI users that mean "check my messages" (VoiceMailMain)."""
    tcp: bool = True
    tls_listen: tuple[Endpoint, ...] = ()
    """SIP over TLS (e.g. `["0.0.0.0:5061"]`); empty: no TLS. Needs tls_certificate and
    tls_private_key (PEM); tls_ca verifies client certificates (required with
    tls_verify_client) and peers we connect to."""
    tls_certificate: Path | None = None
    tls_private_key: Path | None = None
    tls_ca: Path | None = None
    tls_verify_client: bool = False
    srtp: Literal["optional", "required", "off"] = "optional"
    """SRTP with SDES keys (RFC 4568): "optional" answers RTP/SAVP and RTP/AVP offers alike,
    "required" refuses RTP/AVP with 488, "off" takes RTP/AVP only. SDES keys are accepted only
    from INVITEs over TLS unless sdes_in_clear = true."""
    sdes_in_clear: bool = False
    session_expires: int = 1800
    """RFC 4028 session timers: seconds granted to a caller that supports timers but asks for
    none (0: no timer then); a call not refreshed in time is hung up."""
    min_se: int = 90
    """Shortest Session-Expires accepted; shorter ones get 422 with this Min-SE."""
    default_greeting: Literal["unavailable", "busy", "none"] = "unavailable"
    """The greeting of a deposit call that says neither why (no RFC 4458 cause, Diversion
    reason or History-Info cause) nor which (no `b`/`u` in `vm-opts`). "none" is VoiceMail()
    without b and u: no greeting, only a temporary one when recorded."""
    exit_uri: str | None = None
    """Where a caller who leaves the menus goes, as a SIP URI template: `{extension}` is `o`
    (operator, key 0), `a` (key *) or the number to call back / dial out, `{context}` the
    exitcontext. None: those keys do nothing, as in Asterisk without the extensions."""
    credentials: dict[str, str] = field(default_factory=dict)
    """SIP digest secrets of phones outside `trusted` (`"1234"` or `"1234@context"` -> secret),
    from `[sip.credentials]` and the file `credentials_file` names; never the mailbox PIN."""
    pin_as_sip_password: bool = False
    """Compatibility: accept a mailbox's PIN as its SIP digest password (a 4-digit PIN falls to
    an offline attack on one captured request). Off unless set; warned about when on."""
    rate_limit: float = 20.0
    """New SIP requests per second per untrusted source address (burst: twice as many)."""
    trusted_rate_limit: float = 500.0
    """The same for trusted sources (the PBX carries every caller's traffic)."""
    digest_algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    """Digest algorithms offered to phones, in order of preference (RFC 8760)."""
    lockout: LockoutSettings = field(default_factory=lambda: LockoutSettings())


@dataclass(frozen=True)
class AmiSettings:
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = ""
    secret: str = ""


@dataclass(frozen=True)
class MwiSettings:
    sip_notify: bool = True
    webhook_url: str | None = None
    ami: AmiSettings | None = None
    """`externnotify` lives in voicemail.conf, as in Asterisk."""
    unsolicited: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Mailbox (`1234` or `1234@context`) -> SIP URIs told by NOTIFY without subscribing
    (phones that do not SUBSCRIBE); URIs need an IP address and port."""
    presence_server: str | None = None
    """SIP URI (IP address and port) of a presence server (Kamailio presence_mwi) that every
    mailbox's message-summary is PUBLISHed to (RFC 3903); phones subscribe there."""
    publish_domain: str | None = None
    """Domain of the published AORs (`sip:1234@<domain>`); default: the server's address."""
    publish_expires: int = 600
    watch: str = "connection"
    """How watched mailboxes learn of changes: "connection" (one IMAP connection per login in
    NOTIFY or IDLE: any server) or "push" (the IMAP server posts every change to `POST /mwi/push`
    of the HTTP server: Dovecot's push_notification Lua driver, contrib/dovecot/)."""
    push_token: str = field(default="", repr=False)
    """Bearer token the push must carry (the same as the Lua script's imapvm_push_token)."""
    push_safety_recount: int = 300
    """Push mode: every watched mailbox is recounted once per this many seconds (spread out),
    which corrects a push lost on the network."""
    push_connections: int = 8
    """Push mode: IMAP connections per server that recount pushed mailboxes."""
    watch_connections: int = 10000
    """Connection mode: watcher connections per IMAP server at most (past it, mailboxes are
    polled every `pollfreq`)."""
    watch_login_rate: float = 100.0
    """Connection mode: watcher logins started per second per IMAP server at most, so a start
    or a reconnect after an outage does not storm the server (0: unpaced)."""


WATCH_MODES = ("connection", "push")


@dataclass(frozen=True)
class ClusterSettings:
    """Several nodes sharing the mailboxes' publishing (README, "Running several nodes")."""

    nodes: tuple[str, ...] = ()
    """Every node's health URL (`http://host:port`, this node's included); empty: one node."""
    self_url: str | None = None
    """Which of `nodes` this node is."""
    check_interval: float = 1.0
    """Seconds between health checks of the other nodes."""


@dataclass(frozen=True)
class PathSettings:
    spool: Path = Path("/var/spool/asterisk/voicemail")
    outbox: Path = Path("/var/spool/imapvm/outbox")
    sounds: Path = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
    cache: Path = Path("/var/cache/imapvm")
    """Rebuildable caches (the IMAP folder indexes that make a first open after a restart as
    fast as a warm one); losing it costs only speed."""


@dataclass(frozen=True)
class HttpSettings:
    listen: Endpoint | None = Endpoint("127.0.0.1", 9180)
    """Health and metrics; `listen = ""` switches it off."""


@dataclass(frozen=True)
class ImapClientSettings:
    gssapi: bool = False
    """Log in with Kerberos (SASL GSSAPI) using the credential cache in KRB5CCNAME or the
    client keytab in KRB5_CLIENT_KTNAME, instead of passwords."""
    gssapi_host: str = ""
    """Host part of the IMAP service principal (imap/<host>); empty: the IMAP server name."""
    oauth2_token_command: tuple[str, ...] = ()
    """argv (`{user}` is replaced by the IMAP user) that prints an OAuth 2.0 bearer token: the
    IMAP login then uses XOAUTH2 (Microsoft 365, Gmail) instead of the password."""


@dataclass(frozen=True)
class SmtpSettings:
    """SMTP submission for the notification e-mails; without it, voicemail.conf's `mailcmd`."""

    host: str
    port: int = 587
    starttls: bool = True
    username: str = ""
    password: str = ""
    timeout: float = 30.0


@dataclass(frozen=True)
class ServerSettings:
    sip: SipSettings = field(default_factory=SipSettings)
    mwi: MwiSettings = field(default_factory=MwiSettings)
    paths: PathSettings = field(default_factory=PathSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    imap: ImapClientSettings = field(default_factory=ImapClientSettings)
    smtp: SmtpSettings | None = None
    """None: notifications go through `mailcmd`."""
    source: str | None = None
    cluster: ClusterSettings = field(default_factory=ClusterSettings)


# --------------------------------------------------------------------------------- validation

_Where = Callable[[str], Location]


class _Checker:
    """Validates one raw table, reporting by dotted key."""

    def __init__(self, diags: Diagnostics, where: _Where) -> None:
        self.diags = diags
        self.where = where

    def error(self, key: str, message: str) -> None:
        self.diags.error(f"{key}: {message}", self.where(key))

    def table(self, raw: Mapping[str, object], key: str, allowed: set[str]) -> dict[str, object]:
        value = raw.get(key.rsplit(".", 1)[-1], {})
        if not isinstance(value, dict):
            self.error(key, f"must be a table, not {_type_name(value)}")
            return {}
        for name in value:
            if name not in allowed:
                full = f"{key}.{name}"
                self.diags.warning(
                    f"{full}: unknown setting ignored" + did_you_mean(name, allowed),
                    self.where(full),
                )
        return value

    def string(self, table: Mapping[str, object], key: str, default: str) -> str:
        value = table.get(key.rsplit(".", 1)[-1], default)
        if not isinstance(value, str):
            self.error(key, f"must be a string, not {_type_name(value)}")
            return default
        return value

    def boolean(self, table: Mapping[str, object], key: str, default: bool) -> bool:
        value = table.get(key.rsplit(".", 1)[-1], default)
        if not isinstance(value, bool):
            self.error(key, f"must be true or false, not {_type_name(value)}")
            return default
        return value

    def integer(self, table: Mapping[str, object], key: str, default: int, low: int, high: int,
                what: str = "a number") -> int:
        """An integer from `low` to `high` (TOML's true and false are not numbers here); the
        error reads "must be <what> from <low> to <high>"."""
        value = table.get(key.rsplit(".", 1)[-1], default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.error(key, f"must be {what} from {low} to {high}, not {value!r}")
            return default
        return value

    def port(self, table: Mapping[str, object], key: str, default: int) -> int:
        return self.integer(table, key, default, 1, 65535, "a port number")

    def endpoint(self, value: object, key: str, default_port: int) -> Endpoint | None:
        if not isinstance(value, str):
            self.error(key, f'must be a "host:port" string, not {_type_name(value)}')
            return None
        parsed = parse_endpoint(value, default_port)
        if parsed is None:
            self.error(key, f"'{value}' is not host:port (IPv6 as [addr]:port)")
        return parsed

    def string_list(self, table: Mapping[str, object], key: str) -> list[object] | None:
        name = key.rsplit(".", 1)[-1]
        if name not in table:
            return None
        value = table[name]
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            self.error(key, f"must be a list of strings, not {_type_name(value)}")
            return []
        return value


def parse_endpoint(text: str, default_port: int) -> Endpoint | None:
    """`host:port`, `[v6addr]:port`, or a bare host with `default_port`."""
    text = text.strip()
    match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?|([0-9A-Fa-f:.]+)", text)
    if not match:
        return None
    host = match.group(1) or match.group(3) or match.group(5)
    port_text = match.group(2) or match.group(4)
    if match.group(5):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
    port = int(port_text) if port_text else default_port
    if not host or not 1 <= port <= 65535:
        return None
    return Endpoint(host, port)


def _type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _exit_uri(check: _Checker, sip: Mapping[str, object]) -> str | None:
    text = check.string(sip, "sip.exit_uri", "").strip()
    if not text:
        return None
    if not text.startswith(("sip:", "sips:")) or "{extension}" not in text:
        check.error("sip.exit_uri", f"'{text}' must be a sip: URI template with {{extension}}")
        return None
    return text


_SIP_SECURITY_KEYS = {"credentials", "credentials_file", "pin_as_sip_password", "rate_limit",
                      "trusted_rate_limit", "lockout", "digest_algorithms"}


def _positive(check: _Checker, table: Mapping[str, object], key: str, default: float,
              minimum: float = 0.0) -> float:
    """A number above ``minimum`` (or equal to it when it is 0 and the key counts failures)."""
    value = table.get(key.rsplit(".", 1)[-1], default)
    if (isinstance(value, bool) or not isinstance(value, int | float) or value < minimum
            or (value == 0 and minimum == 0 and not key.endswith("free_failures"))):
        check.error(key, f"must be a positive number, not {value!r}")
        return default
    return float(value)


def _sip_security(check: _Checker, sip: Mapping[str, object], settings: SipSettings,
                  diags: Diagnostics, where: _Where) -> SipSettings:
    """SIP digest credentials (never the PIN unless asked), rate limits and lockouts."""
    credentials: dict[str, str] = {}
    file_text = check.string(sip, "sip.credentials_file", "").strip()
    if file_text:
        path = Path(os.path.expanduser(file_text))
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            check.error("sip.credentials_file", f"cannot read {path}: {exc}")
            table = {}
        except tomllib.TOMLDecodeError:
            # The parser's message quotes the file; a secrets file must not be echoed.
            check.error("sip.credentials_file", f"{path} is not a TOML table of mailbox = secret")
            table = {}
        table = table.get("credentials", table) if isinstance(table, dict) else {}
        credentials.update(_credentials(check, table, f"{path}:"))
    raw_credentials = sip.get("credentials", {})
    if not isinstance(raw_credentials, dict):
        check.error("sip.credentials", "must be a table of mailbox = secret")
        raw_credentials = {}
    credentials.update(_credentials(check, raw_credentials, "sip.credentials."))
    for box, secret in sorted(credentials.items()):
        if len(secret) < 16 or secret.isdigit():
            diags.warning(
                f"sip.credentials.{box}: a short or digits-only SIP secret can be guessed "
                f"offline from one captured request; use a long random one, e.g. "
                f'"{secrets.token_urlsafe(24)}"',
                where(f"sip.credentials.{box}"),
            )
    pin = check.boolean(sip, "sip.pin_as_sip_password", False)
    if pin:
        diags.warning(
            "sip.pin_as_sip_password = true: mailbox PINs are accepted as SIP digest passwords; "
            "a 4-digit PIN is found offline from one captured request in milliseconds. Give "
            "phones their own secrets in [sip.credentials] and turn this off",
            where("sip.pin_as_sip_password"),
        )
    lock = check.table(sip, "sip.lockout", {"free_failures", "backoff", "lock_after",
                                             "lock_seconds"})
    defaults = LockoutSettings()
    lockout = LockoutSettings(
        free_failures=int(_positive(check, lock, "sip.lockout.free_failures",
                                    defaults.free_failures)),
        backoff=_positive(check, lock, "sip.lockout.backoff", defaults.backoff),
        lock_after=int(_positive(check, lock, "sip.lockout.lock_after", defaults.lock_after, 1)),
        lock_seconds=_positive(check, lock, "sip.lockout.lock_seconds", defaults.lock_seconds),
    )
    if lockout.lock_after <= lockout.free_failures:
        check.error("sip.lockout.lock_after", "must be larger than free_failures")
    algorithms = settings.digest_algorithms
    raw_algorithms = check.string_list(sip, "sip.digest_algorithms")
    if raw_algorithms is not None:
        names = tuple(str(a).upper() for a in raw_algorithms)
        if not names or any(n not in ("SHA-256", "MD5") for n in names) or len(set(names)) != len(
                names):
            check.error("sip.digest_algorithms",
                        f"{list(raw_algorithms)!r} must list SHA-256 and/or MD5, each once")
        else:
            algorithms = names
    return replace(
        settings, credentials=credentials, pin_as_sip_password=pin, lockout=lockout,
        digest_algorithms=algorithms,
        rate_limit=_positive(check, sip, "sip.rate_limit", settings.rate_limit),
        trusted_rate_limit=_positive(check, sip, "sip.trusted_rate_limit",
                                     settings.trusted_rate_limit),
    )


def _credentials(check: _Checker, table: Mapping[str, object], prefix: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for box, secret in table.items():
        if not isinstance(secret, str) or not secret:
            check.error(f"{prefix}{box}", "must be a non-empty string (the SIP secret)")
        elif any(c in secret for c in '"\\\r\n'):
            check.error(f"{prefix}{box}", "a SIP secret cannot contain quotes, backslashes or "
                        "line breaks")
        else:
            out[str(box)] = secret
    return out


def _mwi_watch(check: _Checker, mwi: Mapping[str, object], settings: MwiSettings,
               ) -> MwiSettings:
    """[mwi] watch and the push_* keys (README, "Message waiting (MWI)")."""
    watch = check.string(mwi, "mwi.watch", "connection")
    if watch not in WATCH_MODES:
        check.error("mwi.watch", f"must be one of {', '.join(WATCH_MODES)}, not '{watch}'"
                    + did_you_mean(watch, set(WATCH_MODES)))
        watch = "connection"
    token = check.string(mwi, "mwi.push_token", "")
    if watch == "push" and not token:
        check.error("mwi.push_token", 'is required with watch = "push" (the bearer token '
                    f'Dovecot\'s script sends), e.g. "{secrets.token_urlsafe(24)}"')
    elif token and (len(token) < 16 or any(not (c.isascii() and c.isprintable()) or c == " "
                                           for c in token)):
        check.error("mwi.push_token", "must be at least 16 printable ASCII characters without "
                    f'spaces, e.g. "{secrets.token_urlsafe(24)}"')
    period = check.integer(mwi, "mwi.push_safety_recount", 300, 10, 86400, "seconds")
    conns = check.integer(mwi, "mwi.push_connections", 8, 1, 64)
    limit = check.integer(mwi, "mwi.watch_connections", 10000, 1, 1_000_000)
    rate = mwi.get("watch_login_rate", 100.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 100000:
        check.error("mwi.watch_login_rate",
                    f"must be logins per second from 0 (unpaced) to 100000, not {rate!r}")
        rate = 100.0
    return replace(settings, watch=watch, push_token=token, push_safety_recount=period,
                   push_connections=conns, watch_connections=limit,
                   watch_login_rate=float(rate))


def _sip_tls(check: _Checker, sip: Mapping[str, object]
             ) -> tuple[tuple[Endpoint, ...], dict[str, Path | None], bool]:
    """[sip] tls_*: the listen addresses and the PEM files (which must exist)."""
    listen: list[Endpoint] = []
    for i, item in enumerate(check.string_list(sip, "sip.tls_listen") or []):
        endpoint = check.endpoint(item, f"sip.tls_listen[{i}]", 5061)
        if endpoint:
            listen.append(endpoint)
    files: dict[str, Path | None] = {}
    for key in ("tls_certificate", "tls_private_key", "tls_ca"):
        text = check.string(sip, f"sip.{key}", "").strip()
        files[key] = Path(text) if text else None
        if text and not Path(text).is_file():
            check.error(f"sip.{key}", f"'{text}' does not exist or is not a file")
    verify = check.boolean(sip, "sip.tls_verify_client", False)
    if listen and (files["tls_certificate"] is None or files["tls_private_key"] is None):
        check.error("sip.tls_listen", "needs sip.tls_certificate and sip.tls_private_key")
        listen = []
    if verify and files["tls_ca"] is None:
        check.error("sip.tls_verify_client", "needs sip.tls_ca (the CA of client certificates)")
    return tuple(listen), files, verify


def _validate(raw: Mapping[str, object], diags: Diagnostics, where: _Where) -> ServerSettings:
    check = _Checker(diags, where)
    for name in raw:
        if name not in {"sip", "mwi", "paths", "http", "imap", "smtp", "cluster"}:
            diags.warning(
                f"{name}: unknown section ignored"
                + did_you_mean(name, {"sip", "mwi", "paths", "http", "imap", "smtp", "cluster"}),
                where(name),
            )
    defaults = ServerSettings()

    sip = check.table(raw, "sip", {"listen", "trusted", "advertise", "rtp_ports", "check_users",
                                   "tcp", "exit_uri", "default_greeting", "tls_listen",
                                   "tls_certificate", "tls_private_key", "tls_ca",
                                   "tls_verify_client", "srtp", "sdes_in_clear",
                                   "session_expires", "min_se",
                                   *_SIP_SECURITY_KEYS})
    listen: list[Endpoint] = []
    for i, item in enumerate(check.string_list(sip, "sip.listen") or []):
        endpoint = check.endpoint(item, f"sip.listen[{i}]", 5060)
        if endpoint:
            listen.append(endpoint)
    trusted: list[IPNetwork] = []
    raw_trusted = check.string_list(sip, "sip.trusted")
    for i, item in enumerate(raw_trusted or []):
        try:
            trusted.append(ipaddress.ip_network(str(item).strip(), strict=False))
        except ValueError:
            check.error(f"sip.trusted[{i}]", f"'{item}' is not an IP address or network")
    advertise = check.string(sip, "sip.advertise", "").strip() or None
    if advertise is not None:
        try:
            ipaddress.ip_address(advertise)
        except ValueError:
            check.error("sip.advertise", f"'{advertise}' is not an IP address")
            advertise = None
    rtp_ports = defaults.sip.rtp_ports
    rtp_text = check.string(sip, "sip.rtp_ports", "")
    if rtp_text:
        m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", rtp_text)
        lo, hi = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
        if not m or not 1024 <= lo < hi <= 65535 or hi - lo < 2:
            check.error("sip.rtp_ports", f"'{rtp_text}' is not a range like 10000-20000 "
                        "(1024-65535, at least two ports)")
        else:
            rtp_ports = (lo, hi)
    check_users = check.string_list(sip, "sip.check_users")
    default_greeting = check.string(sip, "sip.default_greeting", defaults.sip.default_greeting)
    if default_greeting not in ("unavailable", "busy", "none"):
        check.error("sip.default_greeting",
                    f"'{default_greeting}' must be \"unavailable\", \"busy\" or \"none\"")
        default_greeting = defaults.sip.default_greeting
    sip_settings = SipSettings(
        listen=tuple(listen) if "listen" in sip else defaults.sip.listen,
        trusted=tuple(trusted) if raw_trusted is not None else defaults.sip.trusted,
        advertise=advertise,
        rtp_ports=rtp_ports,
        check_users=tuple(str(u) for u in check_users) if check_users is not None
        else defaults.sip.check_users,
        tcp=check.boolean(sip, "sip.tcp", True),
        exit_uri=_exit_uri(check, sip),
        default_greeting=cast(Literal["unavailable", "busy", "none"], default_greeting),
    )
    srtp = check.string(sip, "sip.srtp", "optional")
    if srtp not in ("optional", "required", "off"):
        check.error("sip.srtp", f"'{srtp}' must be \"optional\", \"required\" or \"off\"")
        srtp = "optional"
    sip_settings = replace(sip_settings,
                           srtp=cast(Literal["optional", "required", "off"], srtp),
                           sdes_in_clear=check.boolean(sip, "sip.sdes_in_clear", False),
                           session_expires=check.integer(sip, "sip.session_expires", 1800,
                                                         0, 86400, "a number of seconds"),
                           min_se=check.integer(sip, "sip.min_se", 90, 0, 86400,
                                                "a number of seconds"))
    tls_listen, tls_files, tls_verify = _sip_tls(check, sip)
    sip_settings = replace(sip_settings, tls_listen=tls_listen,
                           tls_certificate=tls_files["tls_certificate"],
                           tls_private_key=tls_files["tls_private_key"],
                           tls_ca=tls_files["tls_ca"], tls_verify_client=tls_verify)
    sip_settings = _sip_security(check, sip, sip_settings, diags, where)

    mwi = check.table(raw, "mwi", {"sip_notify", "webhook_url", "ami", "unsolicited",
                                   "presence_server", "publish_domain", "publish_expires",
                                   "watch", "push_token", "push_safety_recount",
                                   "push_connections", "watch_connections",
                                   "watch_login_rate"})
    unsolicited: dict[str, tuple[str, ...]] = {}
    raw_unsolicited = mwi.get("unsolicited", {})
    if not isinstance(raw_unsolicited, dict):
        check.error("mwi.unsolicited", "must be a table of mailbox = [SIP URIs]")
        raw_unsolicited = {}
    for box in raw_unsolicited:
        items = check.string_list(raw_unsolicited, f"mwi.unsolicited.{box}") or []
        good = []
        for uri in items:
            m = re.fullmatch(r"sips?:[^@\s]+@([0-9.]+|\[[0-9a-fA-F:]+\])(:\d+)?", str(uri))
            if m is None:
                check.error(f"mwi.unsolicited.{box}",
                            f"'{uri}' must be a SIP URI with an IP address (no DNS lookups)")
            else:
                good.append(str(uri))
        unsolicited[str(box)] = tuple(good)
    webhook = check.string(mwi, "mwi.webhook_url", "") or None
    if webhook:
        try:
            url = urlparse(webhook)
            valid = url.scheme in {"http", "https"} and bool(url.netloc)
        except ValueError:
            valid = False
        if not valid:
            check.error("mwi.webhook_url", f"'{webhook}' is not an http(s) URL")
            webhook = None
    ami: AmiSettings | None = None
    if "ami" in mwi:
        table = check.table(mwi, "mwi.ami", {"host", "port", "username", "secret"})
        ami = AmiSettings(
            host=check.string(table, "mwi.ami.host", "127.0.0.1"),
            port=check.port(table, "mwi.ami.port", 5038),
            username=check.string(table, "mwi.ami.username", ""),
            secret=check.string(table, "mwi.ami.secret", ""),
        )
        if isinstance(table, dict) and table and not ami.username:
            check.error("mwi.ami.username", "is required to log in to the AMI")
    presence = check.string(mwi, "mwi.presence_server", "") or None
    if presence and re.fullmatch(r"sip:([^@\s]+@)?([0-9.]+|\[[0-9a-fA-F:]+\])(:\d+)?",
                                 presence) is None:
        check.error("mwi.presence_server",
                    f"'{presence}' must be a SIP URI with an IP address (no DNS lookups)")
        presence = None
    expires = check.integer(mwi, "mwi.publish_expires", 600, 60, 86400, "seconds")
    mwi_settings = MwiSettings(
        sip_notify=check.boolean(mwi, "mwi.sip_notify", True), webhook_url=webhook, ami=ami,
        unsolicited=unsolicited, presence_server=presence,
        publish_domain=check.string(mwi, "mwi.publish_domain", "") or None,
        publish_expires=expires,
    )
    mwi_settings = _mwi_watch(check, mwi, mwi_settings)

    paths = check.table(raw, "paths", {"spool", "outbox", "sounds", "cache"})
    path_values = {}
    for name in ("spool", "outbox", "sounds", "cache"):
        default = str(getattr(defaults.paths, name))
        text = check.string(paths, f"paths.{name}", default)
        if not text.strip() or "\0" in text:
            check.error(f"paths.{name}", "must be a non-empty path without NUL bytes")
            text = default
        path_values[name] = Path(os.path.expanduser(text))
    path_settings = PathSettings(**path_values)

    http = check.table(raw, "http", {"listen"})
    http_listen: Endpoint | None = defaults.http.listen
    if "listen" in http:
        value = http["listen"]
        http_listen = None if value == "" else check.endpoint(value, "http.listen", 9180)
    if mwi_settings.watch == "push" and "listen" in http and http.get("listen") == "":
        check.error("mwi.watch", '"push" needs the HTTP server (Dovecot posts to /mwi/push): '
                    'set http.listen')
    imap = check.table(raw, "imap", {"oauth2_token_command", "gssapi", "gssapi_host"})
    command: tuple[str, ...] = ()
    text = check.string(imap, "imap.oauth2_token_command", "")
    if text.strip():
        try:
            command = tuple(shlex.split(text))
        except ValueError as exc:
            check.error("imap.oauth2_token_command", f"cannot be split into words: {exc}")
    gssapi = check.boolean(imap, "imap.gssapi", False)
    if gssapi and command:
        check.error("imap.gssapi", "choose Kerberos or an OAuth2 token command, not both")
    return ServerSettings(sip_settings, mwi_settings, path_settings, HttpSettings(http_listen),
                          ImapClientSettings(gssapi, check.string(imap, "imap.gssapi_host", ""),
                                             command),
                          smtp=_smtp(check, raw), cluster=_cluster(check, raw))


def _cluster(check: _Checker, raw: Mapping[str, object]) -> ClusterSettings:
    table = check.table(raw, "cluster", {"nodes", "self", "check_interval"})
    nodes: list[str] = []
    for item in check.string_list(table, "cluster.nodes") or []:
        url = urlparse(str(item))
        if url.scheme != "http" or not url.netloc:
            check.error("cluster.nodes", f"'{item}' is not a node's http://host:port")
        else:
            nodes.append(str(item).rstrip("/"))
    me = check.string(table, "cluster.self", "").rstrip("/") or None
    if nodes and me not in nodes:
        check.error("cluster.self", "must be one of cluster.nodes (this node's health URL)")
    interval = table.get("check_interval", 1.0)
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) \
            or not 0.1 <= interval <= 60:
        check.error("cluster.check_interval", f"must be 0.1 to 60 seconds, not {interval!r}")
        interval = 1.0
    return ClusterSettings(tuple(nodes), me, float(interval))


def _smtp(check: _Checker, raw: Mapping[str, object]) -> SmtpSettings | None:
    if "smtp" not in raw:
        return None
    table = check.table(raw, "smtp", {"host", "port", "starttls", "username", "password",
                                      "timeout"})
    host = check.string(table, "smtp.host", "").strip()
    if not host:
        check.error("smtp.host", "is required when [smtp] is present (the submission server)")
        return None
    timeout = table.get("timeout", 30.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        check.error("smtp.timeout", f"must be a positive number of seconds, not {timeout!r}")
        timeout = 30.0
    smtp = SmtpSettings(
        host=host, port=check.port(table, "smtp.port", 587),
        starttls=check.boolean(table, "smtp.starttls", True),
        username=check.string(table, "smtp.username", ""),
        password=check.string(table, "smtp.password", ""), timeout=float(timeout))
    if smtp.password and not smtp.username:
        check.error("smtp.username", "is required with smtp.password (AUTH needs both)")
    return smtp


# ------------------------------------------------------------------------------- file loading


def load_settings(
    path: str | os.PathLike[str] | None,
    diags: Diagnostics,
    overrides: Mapping[str, object] | None = None,
    *,
    required: bool = True,
) -> ServerSettings:
    """Read imapvm.toml (or only the defaults when `path` is None or, with `required=False`,
    missing), apply dotted-key `overrides` from the command line, and validate."""
    raw: dict[str, object] = {}
    lines: dict[str, int] = {}
    source = None
    name = str(path) if path is not None else "<defaults>"
    if path is not None:
        try:
            text = Path(path).read_bytes().decode("utf-8")
        except FileNotFoundError:
            if required:
                diags.error(f"settings file not found: {name}", Location(name))
            text = None
        except (OSError, UnicodeDecodeError) as exc:
            diags.error(f"cannot read settings file: {exc}", Location(name))
            text = None
        if text is not None:
            source = name
            try:
                raw = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                found = re.search(r"line (\d+)", str(exc))
                diags.error(
                    f"TOML syntax error: {exc}", Location(name, int(found.group(1)) if found else 0)
                )
                raw = {}
            lines = key_lines(text)
    overridden: set[str] = set()
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
        overridden.add(dotted)

    def where(key: str) -> Location:
        bare = re.sub(r"\[\d+\]$", "", key)
        # A key set on the command line, or a table or value above or below one, is reported
        # there: the file may not even exist.
        if any(bare == o or bare.startswith(o + ".") or o.startswith(bare + ".")
               for o in overridden):
            return Location("command line")
        # A missing key is reported at the table that should hold it.
        while bare and bare not in lines:
            bare = bare.rpartition(".")[0]
        return Location(name, lines.get(bare, 0))

    settings = _validate(raw, diags, where)
    return replace(settings, source=source)


_DOTTED_KEY = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def parse_override(text: str) -> tuple[str, object]:
    """`sip.listen=["0.0.0.0:5070"]` or `paths.outbox=/srv/outbox` -> (dotted key, value).

    The value is read as a TOML value when it is one (lists, numbers, booleans, quoted strings),
    else taken as a bare string, so paths and addresses need no quoting on a command line.
    """
    key, eq, value = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    if not _DOTTED_KEY.fullmatch(key):
        raise ValueError(f"{key!r} is not a setting name (expected dotted names such as "
                         "sip.listen or paths.outbox)")
    try:
        return key, tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value.strip()


def _set_dotted(raw: dict[str, object], dotted: str, value: object) -> None:
    *tables, last = dotted.split(".")
    node = raw
    for part in tables:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[last] = value


def key_lines(text: str) -> dict[str, int]:
    """Best-effort line numbers of dotted keys (tomllib reports none for valid files)."""
    result: dict[str, int] = {}
    table: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.fullmatch(r"\[\[?\s*([^\]]+?)\s*\]\]?(\s*#.*)?", stripped)
        if header:
            table = [p.strip().strip('"') for p in header.group(1).split(".")]
            result.setdefault(".".join(table), number)
            continue
        key = re.match(r"([A-Za-z0-9_.\-\" ]+?)\s*=", stripped)
        if key:
            parts = [p.strip().strip('"') for p in key.group(1).split(".")]
            result.setdefault(".".join(table + parts), number)
    return result
