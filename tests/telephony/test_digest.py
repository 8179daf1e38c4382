"""Digest authentication for untrusted sources (RFC 7616/8760 SHA-256 and MD5, qop=auth,
nonce expiry, nonce-count replay protection, failures told to the guard)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from imapvm.telephony.sip.core import CoreConfig, SipCore
from imapvm.telephony.sip.digest import DigestAuth, digest_response, parse_auth_params
from imapvm.telephony.sip.message import SipResponse, parse_message

from .sipmsgs import SOURCE, request

SUB = "Event: message-summary"


def test_rfc2617_example() -> None:
    assert digest_response(
        "Mufasa", "testrealm@host.com", "Circle Of Life", "GET", "/dir/index.html",
        "dcd98b7102dd2f0e8b11d0f600bfb0c093", "auth", "00000001", "0a4f113b",
    ) == "6629fae49393a05397450978507c4ef1"


def test_parse_auth_params_quotes_and_tokens() -> None:
    p = parse_auth_params('Digest username="a\\"b", realm="r, x",nc=00000001, qop=auth')
    assert p == {"scheme": "digest", "username": 'a"b', "realm": "r, x", "nc": "00000001",
                 "qop": "auth"}


def authorization(challenge: str, user: str, password: str, method: str, uri: str,
                  nc: int = 1) -> str:
    p = parse_auth_params(challenge)
    algorithm = p.get("algorithm", "MD5")
    resp = digest_response(user, p["realm"], password, method, uri, p["nonce"], "auth",
                           f"{nc:08x}", "c0ffee", algorithm)
    return (f'Digest username="{user}", realm="{p["realm"]}", nonce="{p["nonce"]}", '
            f'uri="{uri}", response="{resp}", algorithm={algorithm}, qop=auth, nc={nc:08x}, '
            'cnonce="c0ffee"')


@dataclass
class Guard:
    """Records what the digest module tells a lockout (the real one is tested elsewhere)."""

    locked: set[str] = field(default_factory=set)
    failures: list[tuple[str, str]] = field(default_factory=list)
    successes: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)

    def expect(self, username: str) -> None:
        self.expected.append(username)

    def allowed(self, username: str, source: str, now: float) -> bool:
        return username not in self.locked

    def failed(self, username: str, source: str, now: float) -> None:
        self.failures.append((username, source))

    def succeeded(self, username: str, source: str, now: float) -> None:
        self.successes.append(username)


def make_core(auth: bool = True, guard: Guard | None = None) -> SipCore:
    passwords = {"1234": "secret"}
    return SipCore(CoreConfig(
        "127.0.0.1", 5070, trusted=(ipaddress.ip_network("192.0.2.0/24"),),
        auth=DigestAuth("vm.example", passwords.get, guard=guard) if auth else None,
    ))


def answers(core: SipCore) -> list[SipResponse]:
    out = [parse_message(s.data) for s in core.take_outgoing()]
    return [m for m in out if isinstance(m, SipResponse)]


def sub(branch: str, auth: str = "", uri: str = "sip:1234@127.0.0.1") -> bytes:
    extra = f"{SUB}\r\nExpires: 600" + (f"\r\nAuthorization: {auth}" if auth else "")
    return request("SUBSCRIBE", branch=branch, uri=uri, extra=extra)


def test_challenge_then_accept_then_refuse_others() -> None:
    core = make_core()
    core.receive(sub("z9hG4bK-1"), SOURCE, 100.0)
    (challenge,) = answers(core)
    assert challenge.status == 401
    www = challenge.headers.get("WWW-Authenticate") or ""
    assert 'realm="vm.example"' in www
    good = authorization(www, "1234", "secret", "SUBSCRIBE", "sip:1234@127.0.0.1")
    core.receive(sub("z9hG4bK-2", good), SOURCE, 101.0)
    assert [r.status for r in answers(core)] == [200]
    wrong = authorization(www, "1234", "guess", "SUBSCRIBE", "sip:1234@127.0.0.1")
    core.receive(sub("z9hG4bK-3", wrong), SOURCE, 102.0)
    assert [r.status for r in answers(core)] == [401]
    other = authorization(www, "1234", "secret", "SUBSCRIBE", "sip:9999@127.0.0.1", nc=2)
    core.receive(sub("z9hG4bK-4", other, uri="sip:9999@127.0.0.1"), SOURCE, 103.0)
    assert [r.status for r in answers(core)] == [403]  # not this subscriber's mailbox
    core.receive(sub("z9hG4bK-5", good), ("10.0.0.99", 5062), 104.0)
    assert [r.status for r in answers(core)] == [401]  # nonce bound to the source address


def test_stale_nonce_and_trusted_and_no_auth() -> None:
    core = make_core()
    core.receive(sub("z9hG4bK-1"), SOURCE, 0.0)
    www = answers(core)[0].headers.get("WWW-Authenticate") or ""
    late = authorization(www, "1234", "secret", "SUBSCRIBE", "sip:1234@127.0.0.1")
    core.receive(sub("z9hG4bK-2", late), SOURCE, 1000.0)
    (stale,) = answers(core)
    assert stale.status == 401
    assert "stale=true" in (stale.headers.get("WWW-Authenticate") or "")
    core.receive(sub("z9hG4bK-3"), ("192.0.2.1", 5060), 0.0)
    assert [r.status for r in answers(core)] == [200]  # trusted: no challenge
    plain = make_core(auth=False)
    plain.receive(sub("z9hG4bK-4"), SOURCE, 0.0)
    assert [r.status for r in answers(plain)] == [403]


def test_sha256_offered_first_and_md5_second_both_accepted() -> None:
    core = make_core()
    core.receive(sub("z9hG4bK-1"), SOURCE, 100.0)
    (challenge,) = answers(core)
    offered = challenge.headers.get_all("WWW-Authenticate")
    assert [parse_auth_params(c)["algorithm"] for c in offered] == ["SHA-256", "MD5"]
    assert all(parse_auth_params(c)["qop"] == "auth" for c in offered)
    for i, www in enumerate(offered):
        good = authorization(www, "1234", "secret", "SUBSCRIBE", "sip:1234@127.0.0.1", nc=i + 1)
        core.receive(sub(f"z9hG4bK-ok{i}", good), SOURCE, 101.0)
        assert [r.status for r in answers(core)] == [200]


def test_rfc7616_sha256_example() -> None:
    # RFC 7616 section 3.9.1 (HTTP, but the computation is the one SIP uses)
    assert digest_response(
        "Mufasa", "http-auth@example.org", "Circle of Life", "GET", "/dir/index.html",
        "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "auth", "00000001",
        "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "SHA-256",
    ) == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


def test_replayed_request_refused_and_fresh_count_accepted() -> None:
    core = make_core()
    core.receive(sub("z9hG4bK-1"), SOURCE, 100.0)
    www = answers(core)[0].headers.get("WWW-Authenticate") or ""
    first = authorization(www, "1234", "secret", "SUBSCRIBE", "sip:1234@127.0.0.1", nc=1)
    core.receive(sub("z9hG4bK-2", first), SOURCE, 101.0)
    assert [r.status for r in answers(core)] == [200]
    core.receive(sub("z9hG4bK-3", first), SOURCE, 102.0)  # the same Authorization again
    (replayed,) = answers(core)
    assert replayed.status == 401
    assert "stale=true" in (replayed.headers.get("WWW-Authenticate") or "")
    second = authorization(www, "1234", "secret", "SUBSCRIBE", "sip:1234@127.0.0.1", nc=2)
    core.receive(sub("z9hG4bK-4", second), SOURCE, 103.0)
    assert [r.status for r in answers(core)] == [200]


def test_guard_counts_failures_and_locks() -> None:
    guard = Guard()
    core = make_core(guard=guard)
    core.receive(sub("z9hG4bK-1"), SOURCE, 100.0)
    www = answers(core)[0].headers.get("WWW-Authenticate") or ""
    assert guard.failures == []  # a request without credentials is no failed guess
    assert guard.expected == ["1234"]  # but the guard may look the mailbox up meanwhile
    wrong = authorization(www, "1234", "0000", "SUBSCRIBE", "sip:1234@127.0.0.1")
    core.receive(sub("z9hG4bK-2", wrong), SOURCE, 101.0)
    assert [r.status for r in answers(core)] == [401]
    assert guard.failures == [("1234", SOURCE[0])]
    guard.locked.add("1234")
    good = authorization(www, "1234", "secret", "SUBSCRIBE", "sip:1234@127.0.0.1", nc=2)
    core.receive(sub("z9hG4bK-3", good), SOURCE, 102.0)
    (locked,) = answers(core)
    assert locked.status == 403  # right secret, but the mailbox is locked
    guard.locked.clear()
    core.receive(sub("z9hG4bK-4", good), SOURCE, 103.0)
    assert [r.status for r in answers(core)] == [200]
    assert guard.successes == ["1234"]


def test_offered_algorithms_follow_the_configuration() -> None:
    core = SipCore(CoreConfig(
        "127.0.0.1", 5070, trusted=(ipaddress.ip_network("192.0.2.0/24"),),
        auth=DigestAuth("vm.example", {"1234": "secret"}.get, algorithms=("MD5",)),
    ))
    core.receive(sub("z9hG4bK-1"), SOURCE, 100.0)
    offered = answers(core)[0].headers.get_all("WWW-Authenticate")
    assert [parse_auth_params(c)["algorithm"] for c in offered] == ["MD5"]
    sha = authorization(offered[0].replace("MD5", "SHA-256"), "1234", "secret", "SUBSCRIBE",
                        "sip:1234@127.0.0.1")
    core.receive(sub("z9hG4bK-2", sha), SOURCE, 101.0)
    assert [r.status for r in answers(core)] == [401]  # not offered: challenged again


def test_trusted_sources_have_their_own_higher_rate_limit() -> None:
    core = SipCore(CoreConfig(
        "127.0.0.1", 5070, trusted=(ipaddress.ip_network("192.0.2.0/24"),),
        auth=DigestAuth("vm.example", {"1234": "secret"}.get),
        rate_limit=(1.0, 2), trusted_rate_limit=(1.0, 5),
    ))
    for n in range(10):  # a burst from the PBX: limited too, above the untrusted allowance
        core.receive(request("OPTIONS", branch=f"z9hG4bK-t{n}", call_id=f"t{n}"),
                     ("192.0.2.1", 5060), 100.0)
    assert len(answers(core)) == 5
    for n in range(10):
        core.receive(request("OPTIONS", branch=f"z9hG4bK-u{n}", call_id=f"u{n}"), SOURCE, 100.0)
    assert len(answers(core)) == 2  # untrusted: its own, lower allowance (401s included)
    assert core.stats["rate_limited"] == 13
