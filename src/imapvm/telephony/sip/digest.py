"""HTTP digest authentication for SIP (RFC 3261 §22, RFC 7616 / RFC 8760: SHA-256 and MD5).

Used for phones outside the trusted networks (typically subscribing to their mailbox's
message-summary). The challenge offers SHA-256 first and MD5 second (RFC 8760 §2.4: a phone
takes the first algorithm it supports), both with ``qop="auth"``.

Nonces are a timestamp plus an HMAC over it and the source address, so nothing is stored to
issue them and a nonce from another address or older than ``nonce_lifetime`` is refused
(answered ``stale=true`` when the credentials were right, so the phone retries silently).
Replays are refused by nonce-count tracking: for every nonce that authenticated a request, the
(cnonce, nc) pairs it came with are kept until the nonce expires, and a pair is good once (a
nonce used without ``qop`` is good for one request only). Only nonces that carried correct
credentials are tracked, so a flood cannot fill the table.

Failures and lockouts are the ``guard``'s business (the server counts them per mailbox across
calls, sources and nodes); without one, nothing is counted.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

log = logging.getLogger(__name__)

Credentials = Callable[[str], str | None]  # username -> SIP secret (None: unknown user)
Verdict = Literal["ok", "stale", "bad", "missing", "locked"]

ALGORITHMS: dict[str, Callable[[str], str]] = {
    "SHA-256": lambda text: hashlib.sha256(text.encode()).hexdigest(),
    "MD5": lambda text: hashlib.md5(text.encode(), usedforsecurity=False).hexdigest(),
}
_MAX_TRACKED_NONCES = 10_000
_MAX_USES_PER_NONCE = 1_000  # then the phone is made to fetch a new nonce (stale=true)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.@+*#-]")


class AuthGuard(Protocol):
    """Counts failures and says whether a user (and a source) may try at all.

    ``expect`` is told who a request without credentials is probably for (its Request-URI
    user), so the guard can bring its view of that user up to date (several nodes share the
    counts) before the credentials arrive."""

    def expect(self, username: str) -> None: ...

    def allowed(self, username: str, source: str, now: float) -> bool: ...

    def failed(self, username: str, source: str, now: float) -> None: ...

    def succeeded(self, username: str, source: str, now: float) -> None: ...


def log_safe(text: str) -> str:
    """A peer-supplied name fit for a log line (no spaces or newlines to forge fail2ban lines)."""
    return _SAFE_NAME.sub("?", text[:64]) or "-"


def parse_auth_params(value: str) -> dict[str, str]:
    """``Digest a="b", c=d`` → {"a": "b", "c": "d"} (scheme checked by the caller)."""
    scheme, _, rest = value.strip().partition(" ")
    params: dict[str, str] = {"scheme": scheme.lower()}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " ,\t":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        name = rest[i:eq].strip().lower()
        i = eq + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            end = i + 1
            chars = []
            while end < n and rest[end] != '"':
                if rest[end] == "\\" and end + 1 < n:
                    end += 1
                chars.append(rest[end])
                end += 1
            params[name] = "".join(chars)
            i = end + 1
        else:
            end = rest.find(",", i)
            end = n if end < 0 else end
            params[name] = rest[i:end].strip()
            i = end
    return params


def digest_response(
    username: str, realm: str, password: str, method: str, uri: str, nonce: str,
    qop: str | None = None, nc: str = "", cnonce: str = "", algorithm: str = "MD5",
) -> str:
    h = ALGORITHMS[algorithm.upper()]
    ha1 = h(f"{username}:{realm}:{password}")
    ha2 = h(f"{method}:{uri}")
    if qop:
        return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return h(f"{ha1}:{nonce}:{ha2}")


@dataclass
class DigestAuth:
    realm: str
    credentials: Credentials
    nonce_lifetime: float = 300.0
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    guard: AuthGuard | None = None
    # offered in this order (RFC 8760 §2.4: the first one a phone supports wins); some
    # clients (sipp 3.6) take the first challenge whatever it is: put "MD5" first for them
    algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    # nonce -> (highest nc seen, expiry): replay protection for nonces that authenticated
    _seen: dict[str, tuple[set[tuple[str, int]], float]] = field(default_factory=dict)

    def _sign(self, stamp: str, source: str) -> str:
        return hmac.new(self.secret, f"{stamp}:{source}".encode(), "sha256").hexdigest()[:24]

    def expect(self, username: str) -> None:
        """A request for ``username`` is about to be challenged (see ``AuthGuard.expect``)."""
        if self.guard is not None and username:
            self.guard.expect(username)

    def challenges(self, source: str, now: float, stale: bool = False) -> list[str]:
        """WWW-Authenticate values, most preferred first: SHA-256, then MD5."""
        stamp = str(int(now))
        nonce = f"{stamp}.{self._sign(stamp, source)}"
        return [
            f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={algorithm}, qop="auth"'
            + (", stale=true" if stale else "")
            for algorithm in self.algorithms
        ]

    def challenge(self, source: str, now: float, stale: bool = False) -> str:
        return self.challenges(source, now, stale)[0]

    def verify(
        self, header: str | None, method: str, source: str, now: float
    ) -> tuple[Verdict, str]:
        """("ok", username) | ("stale", "") | ("bad", username or "") | ("missing", "")
        | ("locked", username). Only "bad" counts as a failed guess."""
        if not header:
            return "missing", ""
        p = parse_auth_params(header)
        if p.get("scheme") != "digest" or p.get("realm") != self.realm:
            return "missing", ""  # not an answer to our challenge: challenge again
        algorithm = p.get("algorithm", "MD5").upper()
        if algorithm not in ALGORITHMS or algorithm not in self.algorithms:
            return "missing", ""
        nonce = p.get("nonce", "")
        stamp, _, sig = nonce.partition(".")
        if (not stamp.isdigit() or len(stamp) > 12
                or not hmac.compare_digest(sig, self._sign(stamp, source))):
            return "missing", ""  # a nonce we never gave this source
        username = p.get("username", "")
        if not username:
            return "missing", ""
        if self.guard is not None and not self.guard.allowed(username, source, now):
            return "locked", username
        qop = p.get("qop")
        nc_text = p.get("nc", "")
        if qop not in (None, "auth") or (qop and not re.fullmatch(r"[0-9a-fA-F]{8}", nc_text)):
            return "bad", username
        password = self.credentials(username)
        expected = (
            digest_response(username, self.realm, password, method, p.get("uri", ""), nonce,
                            qop, nc_text, p.get("cnonce", ""), algorithm)
            if password is not None else None
        )
        if expected is None or not hmac.compare_digest(expected, p.get("response", "")):
            log.warning("auth failure: source=%s user=%s via=sip-digest method=%s",
                        source, log_safe(username), log_safe(method))
            if self.guard is not None:
                self.guard.failed(username, source, now)
            return "bad", username
        if now - int(stamp) > self.nonce_lifetime:
            return "stale", ""  # right password, old nonce: the phone retries silently
        if not self._fresh_count(nonce, p.get("cnonce", "") if qop else "",
                                 int(nc_text, 16) if qop else 0, int(stamp), now):
            log.info("digest replay refused: source=%s user=%s", source, log_safe(username))
            return "stale", ""
        if self.guard is not None:
            self.guard.succeeded(username, source, now)
        return "ok", username

    def _fresh_count(self, nonce: str, cnonce: str, nc: int, stamp: int, now: float) -> bool:
        """True (and remembered) the first time this nonce comes with this (cnonce, nc).

        The response hashes the cnonce and nc, so only the password's owner can make a new
        pair: a pair seen before is a replay. (Not "nc must grow": phones such as baresip
        start every request at nc=1 with a new cnonce, which is legitimate.)"""
        if len(self._seen) >= _MAX_TRACKED_NONCES:
            self._seen = {n: v for n, v in self._seen.items() if v[1] > now}
            if len(self._seen) >= _MAX_TRACKED_NONCES:
                return False  # full of live nonces: make phones fetch new ones
        pairs, expiry = self._seen.get(nonce, (set(), stamp + self.nonce_lifetime))
        if (cnonce, nc) in pairs or len(pairs) >= _MAX_USES_PER_NONCE:
            return False
        pairs.add((cnonce, nc))
        self._seen[nonce] = (pairs, expiry)
        return True
