"""Which mailbox a call is for: Request-URI, RFC 4458, History-Info, Diversion, check users."""

from __future__ import annotations

import pytest

from imapvm.channel import CallerId, CallTarget
from imapvm.telephony.routing import RoutingConfig, caller_id, resolve_target
from imapvm.telephony.sip.message import SipRequest, parse_message

from .sipmsgs import invite

CONFIG = RoutingConfig(check_users=("*97", "vm"), strip_prefix=("+49",))


def req(uri: str = "sip:1234@127.0.0.1", extra: str = "") -> SipRequest:
    msg = parse_message(invite(uri=uri, extra=extra))
    assert isinstance(msg, SipRequest)
    return msg


@pytest.mark.parametrize(
    ("uri", "extra", "expected"),
    [
        ("sip:1234@h", "", CallTarget("deposit", "1234", None, "1234")),
        ("sip:%2A97@h", "", CallTarget("check", "alice", None, "*97")),
        ("sip:vm@h", "P-Asserted-Identity: <sip:+49301234@pbx>",
         CallTarget("check", "301234", None, "vm")),
        ("sip:voicemail@h;target=sip:2000%40h;cause=486", "",
         CallTarget("deposit", "2000", "busy", "voicemail")),
        ("sip:voicemail@h;target=sip:2000%40h;cause=408", "",
         CallTarget("deposit", "2000", "unavailable", "voicemail")),
        ("sip:vmbox@h", "Diversion: <sip:3000@pbx>;reason=user-busy;counter=1, <sip:1@x>",
         CallTarget("deposit", "3000", "busy", "vmbox")),
        ("sip:vmbox@h", "Diversion: <sip:3001@pbx>;reason=no-answer",
         CallTarget("deposit", "3001", "unavailable", "vmbox")),
        ("sip:vmbox@h",
         "History-Info: <sip:4000@pbx>;index=1, <sip:vmbox@h;cause=480>;index=1.1",
         CallTarget("deposit", "4000", "unavailable", "vmbox")),
        ("tel:+495551234", "", CallTarget("deposit", "5551234", None, "+495551234")),
    ],
)
def test_resolve_target(uri: str, extra: str, expected: CallTarget) -> None:
    assert resolve_target(req(uri, extra), CONFIG) == expected


def test_voicemail_users_restrict_rfc4458() -> None:
    config = RoutingConfig(voicemail_users=("voicemail",))
    other = req("sip:other@h;target=sip:2000%40h")
    assert resolve_target(other, config).mailbox == "other"


def test_caller_id_prefers_p_asserted_identity_and_handles_anonymous() -> None:
    pai = req(extra='P-Asserted-Identity: "Bob" <sip:2222@pbx>')
    assert caller_id(pai) == CallerId("2222", "Bob", "sip:2222@pbx")
    assert caller_id(req()) == CallerId("alice", "Alice", "sip:alice@10.0.0.1")
    anonymous = invite().replace(b"sip:alice@10.0.0.1", b"sip:anonymous@anonymous.invalid")
    anon = parse_message(anonymous)
    assert isinstance(anon, SipRequest)
    assert caller_id(anon).number is None


@pytest.mark.parametrize(
    ("uri", "extra", "expected"),
    [
        # several targets, as repeated parameters or one &-list; Asterisk's box@context form
        ("sip:voicemail@h;target=sip:2000%40pbx;target=2001%40sales;cause=486;vm-opts=U,s", "",
         CallTarget("deposit", "2000", "busy", "voicemail", None, ("2001@sales",), "U,s")),
        ("sip:voicemail@h;target=2000&2001&2002;vm-context=sales", "",
         CallTarget("deposit", "2000", None, "voicemail", "sales", ("2001@sales", "2002@sales"))),
        # the header, for PBXs that cannot add URI parameters
        ("sip:2000@h", "X-Imapvm-Options: target=1234%40other;vm-opts=d(sales)g(6)",
         CallTarget("deposit", "1234", None, "2000", "other", (), "d(sales)g(6)")),
        ("sip:2000@h", "X-Imapvm-Options: vm-opts=Pu",
         CallTarget("deposit", "2000", None, "2000", None, (), "Pu")),
        # VoiceMailMain for a given mailbox and VoiceMailPlayMsg
        ("sip:*97@h;target=1234%40sales;vm-opts=s", "",
         CallTarget("check", "1234", None, "*97", "sales", (), "s")),
        ("sip:voicemail@h;target=1234;vm-play=2", "",
         CallTarget("play", "1234", None, "voicemail", None, (), "", "2")),
        # a bad target is dropped (logged), the good one kept
        ("sip:voicemail@h;target=sip:%40pbx;target=1234", "",
         CallTarget("deposit", "1234", None, "voicemail")),
    ],
)
def test_voicemail_options_convention(uri: str, extra: str, expected: CallTarget) -> None:
    assert resolve_target(req(uri, extra), CONFIG) == expected


def test_untrusted_sources_cannot_pass_options() -> None:
    request = req("sip:*97@h;target=1234;vm-opts=s;vm-play=1", "X-Imapvm-Options: vm-opts=s")
    target = resolve_target(request, CONFIG, trusted=False)
    assert target == CallTarget("check", "1234", None, "*97")
