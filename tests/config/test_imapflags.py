"""imapflags as a set of c-client switches, mapped to a TLS policy."""

from __future__ import annotations

import pytest

from imapvm.config.diagnostics import Diagnostics, Location, Severity
from imapvm.config.imapflags import TlsMode, parse_flags, tls_policy


@pytest.mark.parametrize(
    ("flags", "mode", "verify"),
    [
        ("", TlsMode.STARTTLS_IF_OFFERED, True),
        ("ssl", TlsMode.IMPLICIT, True),
        ("SSL/novalidate-cert", TlsMode.IMPLICIT, False),
        ("/ssl/validate-cert/", TlsMode.IMPLICIT, True),
        ("tls", TlsMode.STARTTLS_REQUIRED, True),
        ("tls/novalidate-cert", TlsMode.STARTTLS_REQUIRED, False),
        ("notls", TlsMode.NONE, True),
        ("secure", TlsMode.STARTTLS_REQUIRED, True),
        ("ssl/notls", TlsMode.IMPLICIT, True),
        ("imap4rev1/norsh", TlsMode.STARTTLS_IF_OFFERED, True),
    ],
)
def test_policy(flags: str, mode: TlsMode, verify: bool) -> None:
    diags = Diagnostics()
    policy = tls_policy(parse_flags(flags), diags)
    assert policy.mode is mode
    assert policy.verify_certificate is verify
    assert not diags.items


def test_flags_are_a_set() -> None:
    assert parse_flags("ssl/novalidate-cert") == parse_flags("novalidate-cert/SSL/ssl")
    assert parse_flags(" ssl / debug ") == frozenset({"ssl", "debug"})


def test_secure_and_debug_are_kept() -> None:
    policy = tls_policy(parse_flags("ssl/secure/debug"), Diagnostics())
    assert policy.secure_auth
    assert policy.debug


def test_unknown_flag_warns_with_suggestion_and_location() -> None:
    diags = Diagnostics()
    where = Location("voicemail.conf", 7)
    policy = tls_policy(parse_flags("ssl/novalidate-certs/frob"), diags, where)
    assert policy.mode is TlsMode.IMPLICIT
    assert policy.verify_certificate  # a misspelt novalidate-cert does not turn checks off
    warnings = sorted(d.message for d in diags)
    assert len(warnings) == 2
    assert "did you mean 'novalidate-cert'" in warnings[1]
    assert all(d.location == where and d.severity is Severity.WARNING for d in diags)


def test_misplaced_login_flags_warn() -> None:
    diags = Diagnostics()
    tls_policy(parse_flags("ssl/authuser=master/user=bob"), diags)
    assert len(diags.warnings) == 2
    assert any("authuser directive" in d.message for d in diags)


@pytest.mark.parametrize("flags", ["tls/notls", "validate-cert/novalidate-cert", "notls/secure"])
def test_contradictions_are_errors(flags: str) -> None:
    diags = Diagnostics()
    tls_policy(parse_flags(flags), diags)
    assert len(diags.errors) == 1
