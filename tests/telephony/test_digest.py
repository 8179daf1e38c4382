"""Digest authentication for untrusted sources (RFC 2617 MD5, qop=auth)."""

from __future__ import annotations

import ipaddress

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


def authorization(challenge: str, user: str, password: str, method: str, uri: str) -> str:
    p = parse_auth_params(challenge)
    resp = digest_response(user, p["realm"], password, method, uri, p["nonce"], "auth",
                           "00000001", "c0ffee")
    return (f'Digest username="{user}", realm="{p["realm"]}", nonce="{p["nonce"]}", '
            f'uri="{uri}", response="{resp}", algorithm=MD5, qop=auth, nc=00000001, '
            'cnonce="c0ffee"')


def make_core(auth: bool = True) -> SipCore:
    passwords = {"1234": "secret"}
    return SipCore(CoreConfig(
        "127.0.0.1", 5070, trusted=(ipaddress.ip_network("192.0.2.0/24"),),
        auth=DigestAuth("vm.example", passwords.get) if auth else None,
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
    other = authorization(www, "1234", "secret", "SUBSCRIBE", "sip:9999@127.0.0.1")
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
