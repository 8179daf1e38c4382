"""`imapflags`: c-client mailbox-spec switches, understood as a set and turned into a TLS policy.

Asterisk pastes the value verbatim into a c-client mailbox name (`{host:port/imap/<flags>}`), so
its meaning is c-client's: `/ssl` is TLS from the first byte, `/tls` insists on STARTTLS, `/notls`
forbids it, and with none of them c-client upgrades with STARTTLS whenever the server offers it.
Certificates are verified unless `/novalidate-cert`. imapvm keeps exactly those meanings but names
them, so the IMAP layer never parses strings.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from imapvm.config.diagnostics import Diagnostics, Location, did_you_mean


class TlsMode(enum.Enum):
    IMPLICIT = "implicit-tls"
    """TLS handshake right after connecting (c-client `/ssl`; usually port 993)."""
    STARTTLS_REQUIRED = "starttls-required"
    """Plain connection upgraded with STARTTLS; refuse servers that do not offer it (`/tls`)."""
    STARTTLS_IF_OFFERED = "starttls-if-offered"
    """Upgrade when the server advertises STARTTLS, else stay in clear (c-client's default)."""
    NONE = "none"
    """Never encrypt (`/notls`)."""


@dataclass(frozen=True)
class ImapSecurity:
    mode: TlsMode = TlsMode.STARTTLS_IF_OFFERED
    verify_certificate: bool = True
    secure_auth: bool = False
    """c-client `/secure`: never send a password over an unencrypted connection."""
    debug: bool = False
    """c-client `/debug`: log the protocol exchange."""

    def describe(self) -> str:
        parts = [self.mode.value]
        if self.mode is not TlsMode.NONE:
            parts.append("verify-cert" if self.verify_certificate else "no-cert-check")
        if self.secure_auth:
            parts.append("secure-auth")
        return ", ".join(parts)


HONOURED = frozenset({"ssl", "tls", "notls", "novalidate-cert", "validate-cert", "secure", "debug"})
IGNORED = frozenset(
    {"imap", "imap2", "imap2bis", "imap4", "imap4rev1", "norsh", "loser", "retry", "tls-sslv23"}
)
"""c-client switches that exist but change nothing for imapvm (protocol variants, rsh)."""
MISPLACED = {
    "user": "imapuser",
    "authuser": "authuser",
    "service": "",
    "anonymous": "",
    "readonly": "",
}


def parse_flags(value: str) -> frozenset[str]:
    """`ssl/novalidate-cert` -> {"ssl", "novalidate-cert"}; c-client compares case-insensitively."""
    return frozenset(part.strip().lower() for part in value.split("/") if part.strip())


def tls_policy(
    flags: frozenset[str], diags: Diagnostics, where: Location | None = None
) -> ImapSecurity:
    """Map a flag set to a policy, reporting unknown or contradictory flags at `where`."""
    for flag in sorted(flags):
        key = flag.partition("=")[0]
        if flag in HONOURED or flag in IGNORED:
            continue
        if key in MISPLACED:
            directive = MISPLACED[key]
            hint = f"; use the {directive} directive instead" if directive else ""
            diags.warning(f"imapflags: '/{flag}' is not supported and is ignored{hint}", where)
            continue
        diags.warning(
            f"imapflags: unknown flag '{flag}' ignored" + did_you_mean(flag, HONOURED | IGNORED),
            where,
        )
    if "tls" in flags and "notls" in flags:
        diags.error("imapflags: 'tls' and 'notls' contradict each other", where)
    if "validate-cert" in flags and "novalidate-cert" in flags:
        diags.error("imapflags: 'validate-cert' and 'novalidate-cert' contradict each other", where)
    if "ssl" in flags:
        if "tls" in flags:
            diags.warning("imapflags: 'ssl' already encrypts; 'tls' (STARTTLS) is ignored", where)
        mode = TlsMode.IMPLICIT
    elif "tls" in flags:
        mode = TlsMode.STARTTLS_REQUIRED
    elif "notls" in flags:
        mode = TlsMode.NONE
    elif "secure" in flags:
        # We offer no challenge-response login, so "no plaintext password" needs encryption.
        mode = TlsMode.STARTTLS_REQUIRED
    else:
        mode = TlsMode.STARTTLS_IF_OFFERED
    if mode is TlsMode.NONE and "secure" in flags:
        diags.error(
            "imapflags: 'secure' forbids sending the password in clear, but 'notls' forbids "
            "encryption",
            where,
        )
    return ImapSecurity(
        mode=mode,
        verify_certificate="novalidate-cert" not in flags,
        secure_auth="secure" in flags,
        debug="debug" in flags,
    )
