"""RFC 4475-style torture requests: the sans-I/O core answers each as the RFC says (505, 400,
513, 501, 416) or drops what cannot be answered, and survives all of them."""

from __future__ import annotations

import pytest

from imapvm.telephony.sip.core import CoreConfig, SipCore
from imapvm.telephony.sip.message import SipResponse, parse_message

from .torture import Case, corpus, options

SOURCE = ("192.0.2.99", 5060)
CASES = {case.name: case for case in corpus()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_case_gets_the_answer_rfc_4475_expects(name: str) -> None:
    case: Case = CASES[name]
    core = SipCore(CoreConfig("127.0.0.1", 5060))
    core.receive(case.data, SOURCE, 1.0)
    # status lines read directly: an answer echoes the request's (maybe broken) CSeq
    statuses = [int(s.data.split(b" ", 2)[1]) for s in core.take_outgoing()]
    assert [st for st in statuses if st >= 200] == ([case.status] if case.status else [])
    core.receive(options(), SOURCE, 2.0)  # and the core still works
    alive = [parse_message(s.data) for s in core.take_outgoing()]
    assert [getattr(m, "status", None) for m in alive] == [200]


def test_unknown_method_answer_lists_what_we_allow() -> None:
    core = SipCore(CoreConfig("127.0.0.1", 5060))
    core.receive(CASES["unknown-method"].data, SOURCE, 1.0)
    (answer,) = [parse_message(s.data) for s in core.take_outgoing()]
    assert isinstance(answer, SipResponse)
    assert "INVITE" in (answer.headers.get("Allow") or "")
