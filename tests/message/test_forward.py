"""Forward with and without comment: the original caller, time and id survive (§6 #24)."""

from __future__ import annotations

import numpy as np

from imapvm.audio import concat
from imapvm.message import (
    FLAG_URGENT,
    Deposit,
    ForwardInfo,
    build_voicemail,
    parse_message,
)
from tests.message import asterisk_reader as ast
from tests.message.helpers import FIXED, sawtooth, settings, strict_parse
from tests.support.speech import speech


def _original() -> tuple[bytes, np.ndarray]:
    audio = speech(4.0)
    built = build_voicemail(
        Deposit(number=1, caller_id_num="5551234", caller_id_name="Andy Dufresne",
                flag=FLAG_URGENT, orig_time=1795000000, msg_id="1795000000-00c0ffee"),
        settings(mailbox="4324", fullname="Heywood"),
        audio,
        randomness=FIXED,
    )
    return built.raw, audio.samples


def test_forward_with_comment_keeps_original_caller_time_id_duration() -> None:
    raw, _ = _original()
    original = parse_message(raw)
    comment = sawtooth(2.0)
    deposit = Deposit.forward_of(
        original.meta, number=6, by_mailbox="4324", by_context="default", at=1795100000
    )
    built = build_voicemail(
        deposit, settings(), original.message.decode(), intro=comment, randomness=FIXED
    )
    strict_parse(built.raw)
    copy = parse_message(built.raw)
    m = copy.meta
    assert (m.caller_id_num, m.caller_id_name) == ("5551234", "Andy Dufresne")
    assert m.orig_time == 1795000000
    assert m.msg_id == "1795000000-00c0ffee"
    assert m.duration == 4  # the message's, not the comment's
    assert m.flag == ""  # forward_urgent_auto off
    assert m.forwarded == ForwardInfo("4324", "default", 1795100000, comment_duration=2)
    assert m.number == 6
    assert m.mailbox == "1234"
    assert copy.intro is not None
    assert copy.intro.filename == "msgintro0005.WAV"
    assert copy.intro.decode().frames == comment.frames
    view = ast.retrieve(built.raw)
    assert [n for n, _ in view.playback()] == ["intro.WAV", "message.WAV"]
    assert view.metadata["Message-ID"] == "1795000000-00c0ffee"  # never "(null)"
    assert view.metadata["Orig-time"] == "1795000000"


def test_forward_without_comment_has_no_intro_and_urgency_on_request() -> None:
    raw, _ = _original()
    original = parse_message(raw).meta
    deposit = Deposit.forward_of(
        original, number=2, by_mailbox="4324", by_context="default", at=1795100000,
        keep_urgent=True,
    )
    built = build_voicemail(deposit, settings(), speech(4.0), randomness=FIXED)
    copy = parse_message(built.raw)
    assert copy.intro is None
    assert copy.meta.forwarded == ForwardInfo("4324", "default", 1795100000, None)
    assert copy.meta.is_urgent
    assert built.flags == ("\\Flagged",)
    assert ast.retrieve(built.raw).intro is None


def test_comment_plus_original_for_single_file_clients() -> None:
    comment, original = sawtooth(1.5), speech(3.0)
    joined = concat(comment, original)
    assert joined.frames == comment.frames + original.frames
    assert np.array_equal(joined.samples[: comment.frames], comment.samples)
    assert np.array_equal(joined.samples[comment.frames :], original.samples)
