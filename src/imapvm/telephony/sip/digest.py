"""HTTP digest authentication for SIP (RFC 3261 §22, RFC 2617 MD5 with qop=auth).

Used for phones outside the trusted networks (typically subscribing to their mailbox's
message-summary). Nonces are stateless: a timestamp plus an HMAC over it and the source
address, so any imapvm node can verify them and nothing needs storing or expiring.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

Credentials = Callable[[str], str | None]  # username -> password (None: unknown user)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


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
    qop: str | None = None, nc: str = "", cnonce: str = "",
) -> str:
    ha1 = _md5(f"{username}:{realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    if qop:
        return _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _md5(f"{ha1}:{nonce}:{ha2}")


@dataclass
class DigestAuth:
    realm: str
    credentials: Credentials
    nonce_lifetime: float = 300.0
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def _sign(self, stamp: str, source: str) -> str:
        return hmac.new(self.secret, f"{stamp}:{source}".encode(), "sha256").hexdigest()[:24]

    def challenge(self, source: str, now: float, stale: bool = False) -> str:
        stamp = str(int(now))
        nonce = f"{stamp}.{self._sign(stamp, source)}"
        return (f'Digest realm="{self.realm}", nonce="{nonce}", algorithm=MD5, qop="auth"'
                + (", stale=true" if stale else ""))

    def verify(self, header: str | None, method: str, source: str, now: float) -> tuple[str, str]:
        """("ok", username) | ("stale", "") | ("bad", "")."""
        if not header:
            return "bad", ""
        p = parse_auth_params(header)
        if p.get("scheme") != "digest" or p.get("realm") != self.realm:
            return "bad", ""
        if p.get("algorithm", "MD5").upper() != "MD5":
            return "bad", ""
        nonce = p.get("nonce", "")
        stamp, _, sig = nonce.partition(".")
        if not stamp.isdigit() or not hmac.compare_digest(sig, self._sign(stamp, source)):
            return "bad", ""
        username = p.get("username", "")
        password = self.credentials(username) if username else None
        if password is None:
            return "bad", ""
        qop = p.get("qop")
        if qop not in (None, "auth"):
            return "bad", ""
        expected = digest_response(username, self.realm, password, method, p.get("uri", ""),
                                   nonce, qop, p.get("nc", ""), p.get("cnonce", ""))
        if not hmac.compare_digest(expected, p.get("response", "")):
            return "bad", ""
        if now - int(stamp) > self.nonce_lifetime:
            return "stale", ""  # right password, old nonce: the phone retries silently
        return "ok", username
