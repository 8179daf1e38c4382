"""imapvm.toml: defaults, validation naming the key and line, command-line overrides."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from imapvm.config.diagnostics import Diagnostics, Severity
from imapvm.config.settings import Endpoint, ServerSettings, load_settings, parse_endpoint

from .helpers import only

GOOD = """
[sip]
listen = ["0.0.0.0:5070", "[::1]:5080", "pbx.example.com"]
trusted = ["192.0.2.0/24", "2001:db8::1"]

[mwi]
sip_notify = false
webhook_url = "https://hooks.example.com/mwi"

[mwi.ami]
host = "10.0.0.5"
port = 5039
username = "imapvm"
secret = "s3cret"

[paths]
spool = "/srv/vm/spool"
outbox = "/srv/vm/outbox"
sounds = "/srv/sounds"

[http]
listen = "[::]:9100"
"""


def load(tmp_path: Path, text: str, overrides: dict[str, object] | None = None):
    path = tmp_path / "imapvm.toml"
    path.write_text(text, encoding="utf-8")
    diags = Diagnostics()
    return load_settings(path, diags, overrides), diags


def test_full_file(tmp_path: Path) -> None:
    settings, diags = load(tmp_path, GOOD)
    assert not diags.items
    assert settings.sip.listen == (
        Endpoint("0.0.0.0", 5070),
        Endpoint("::1", 5080),
        Endpoint("pbx.example.com", 5060),
    )
    assert settings.sip.trusted == (
        ipaddress.ip_network("192.0.2.0/24"),
        ipaddress.ip_network("2001:db8::1/128"),
    )
    assert not settings.mwi.sip_notify
    assert settings.mwi.webhook_url == "https://hooks.example.com/mwi"
    assert settings.mwi.ami is not None
    assert (settings.mwi.ami.host, settings.mwi.ami.port, settings.mwi.ami.secret) == (
        "10.0.0.5",
        5039,
        "s3cret",
    )
    assert settings.paths.outbox == Path("/srv/vm/outbox")
    assert settings.http.listen == Endpoint("::", 9100)
    assert str(settings.http.listen) == "[::]:9100"
    assert settings.source == str(tmp_path / "imapvm.toml")


def test_missing_file_defaults_when_optional_error_when_required(tmp_path: Path) -> None:
    diags = Diagnostics()
    settings = load_settings(tmp_path / "absent.toml", diags, required=False)
    assert not diags.items
    assert settings == ServerSettings()
    assert settings.mwi.ami is None
    load_settings(tmp_path / "absent.toml", diags, required=True)
    assert only(diags, Severity.ERROR, "not found").file == str(tmp_path / "absent.toml")


def test_every_problem_is_reported_with_key_and_line(tmp_path: Path) -> None:
    text = (
        "[sip]\n"  # 1
        'listen = ["0.0.0.0:99999", 5]\n'  # 2
        'trusted = ["not-a-net"]\n'  # 3
        "[mwi]\n"  # 4
        'webhook_url = "ftp://x"\n'  # 5
        "sip_notfy = true\n"  # 6
        "[mwi.ami]\n"  # 7
        'port = "5038"\n'  # 8
        "[paths]\n"  # 9
        'outbox = ""\n'  # 10
        "[htp]\n"  # 11
    )
    settings, diags = load(tmp_path, text)
    assert only(diags, Severity.ERROR, "sip.listen[0]").line == 2
    assert only(diags, Severity.ERROR, "sip.listen[1]").line == 2
    assert only(diags, Severity.ERROR, "sip.trusted[0]").line == 3
    assert only(diags, Severity.ERROR, "mwi.webhook_url").line == 5
    assert "did you mean 'sip_notify'" in only(diags, Severity.WARNING, "sip_notfy").message
    assert only(diags, Severity.ERROR, "mwi.ami.port").line == 8
    assert only(diags, Severity.ERROR, "mwi.ami.username").line == 7
    assert only(diags, Severity.ERROR, "paths.outbox").line == 10
    assert "did you mean 'http'" in only(diags, Severity.WARNING, "htp").message
    assert settings.paths.outbox == ServerSettings().paths.outbox


def test_syntax_error_has_a_line(tmp_path: Path) -> None:
    _, diags = load(tmp_path, "[sip]\nlisten = [\n\n= broken\n")
    error = only(diags, Severity.ERROR, "TOML syntax error")
    assert error.line >= 2


def test_wrong_table_type(tmp_path: Path) -> None:
    _, diags = load(tmp_path, 'sip = "udp"\n')
    assert only(diags, Severity.ERROR, "sip: must be a table").line == 1


def test_command_line_overrides_win_and_are_validated(tmp_path: Path) -> None:
    settings, diags = load(
        tmp_path,
        GOOD,
        {"sip.listen": ["127.0.0.1:5999"], "paths.outbox": "/tmp/ob", "http.listen": "bad:port"},
    )
    assert settings.sip.listen == (Endpoint("127.0.0.1", 5999),)
    assert settings.paths.outbox == Path("/tmp/ob")
    error = only(diags, Severity.ERROR, "http.listen")
    assert error.file == "command line"


def test_http_can_be_switched_off(tmp_path: Path) -> None:
    settings, diags = load(tmp_path, '[http]\nlisten = ""\n')
    assert not diags.items
    assert settings.http.listen is None


def test_parse_endpoint() -> None:
    assert parse_endpoint("[2001:db8::5]:5061", 5060) == Endpoint("2001:db8::5", 5061)
    assert parse_endpoint("2001:db8::5", 5060) == Endpoint("2001:db8::5", 5060)
    assert parse_endpoint("host", 1) == Endpoint("host", 1)
    assert parse_endpoint("host:0", 1) is None
    assert parse_endpoint("a:b:c", 1) is None
    assert parse_endpoint("", 1) is None


def test_odd_url_and_path_values_are_errors_not_tracebacks(tmp_path: Path) -> None:
    _, diags = load(tmp_path, '[mwi]\nwebhook_url = "http://[::1"\n[paths]\nspool = "a\\u0000b"\n')
    assert only(diags, Severity.ERROR, "mwi.webhook_url").line == 2
    assert only(diags, Severity.ERROR, "paths.spool").line == 4


SCALARS = st.one_of(
    st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=20)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
KEYS = st.sampled_from(
    [
        "sip", "sip.listen", "sip.trusted", "mwi", "mwi.sip_notify", "mwi.webhook_url",
        "mwi.ami", "mwi.ami.host", "mwi.ami.port", "mwi.ami.username", "mwi.ami.secret",
        "paths", "paths.spool", "paths.outbox", "paths.sounds", "http", "http.listen", "other",
    ]
)  # fmt: skip


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_any_value_anywhere_never_raises(overrides: dict[str, object]) -> None:
    diags = Diagnostics()
    result = load_settings(None, diags, overrides)
    assert isinstance(result, ServerSettings)
    for diagnostic in diags:
        assert diagnostic.location is not None


def test_mwi_push_mode_is_validated_with_lines(tmp_path: Path) -> None:
    settings, diags = load(tmp_path, '[mwi]\nwatch = "push"\npush_token = "0123456789abcdef-x"\n'
                                     "push_safety_recount = 120\npush_connections = 2\n")
    assert not diags.items
    assert (settings.mwi.watch, settings.mwi.push_safety_recount,
            settings.mwi.push_connections) == ("push", 120, 2)
    assert "0123456789abcdef-x" not in repr(settings.mwi)
    text = (
        "[mwi]\n"  # 1
        'watch = "pushh"\n'  # 2
        'push_token = "short"\n'  # 3
        "push_safety_recount = 5\n"  # 4
        "push_connections = 0\n"  # 5
    )
    settings, diags = load(tmp_path, text)
    assert "did you mean 'push'" in only(diags, Severity.ERROR, "mwi.watch").message
    assert only(diags, Severity.ERROR, "mwi.watch").line == 2
    assert only(diags, Severity.ERROR, "mwi.push_token").line == 3
    assert only(diags, Severity.ERROR, "mwi.push_safety_recount").line == 4
    assert only(diags, Severity.ERROR, "mwi.push_connections").line == 5
    assert settings.mwi.watch == "connection"
    _, diags = load(tmp_path, '[mwi]\nwatch = "push"\n[http]\nlisten = ""\n')
    assert "is required" in only(diags, Severity.ERROR, "mwi.push_token").message
    assert "http.listen" in only(diags, Severity.ERROR, "mwi.watch").message
