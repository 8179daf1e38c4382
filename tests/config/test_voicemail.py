"""voicemail.conf semantics: precedence, mailbox lines, IMAP accounts, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from imapvm.config.diagnostics import Severity
from imapvm.config.imapflags import TlsMode
from imapvm.config.model import StorageKind

from .helpers import load_conf, messages, only

IMAP = "[general]\nimapserver=imap.example.com\n"


def test_precedence_mailbox_then_general_then_default(tmp_path: Path) -> None:
    cfg, diags = load_conf(
        tmp_path,
        "[general]\nmaxmsg=50\nreview=yes\n[default]\n"
        "1 => 1111,One,one@example.com,,maxmsg=5\n"
        "2 => 2222,Two,two@example.com\n",
    )
    assert not diags.has_errors
    one, two = cfg.effective("1@default"), cfg.effective("2", "default")
    assert (one.maxmsg, two.maxmsg) == (5, 50)  # mailbox beats [general]
    assert one.review
    assert two.review
    assert one.envelope
    assert one.sayduration
    assert one.skipms == 3000
    assert one.serveremail == "asterisk"
    assert one.formats == ("wav",)
    assert one.storage is StorageKind.SPOOL
    assert one.imap is None


def test_mailbox_line_fields(tmp_path: Path) -> None:
    cfg, _ = load_conf(
        tmp_path,
        "[default]\n"
        "10 => -1234,Locked Name,a@example.com|b@example.com,pager@example.com,"
        "Tz=eastern|saycid=yes|noequals|emailsubject=a=b\n"
        "11 => ,No Password\n"
        "[zonemessages]\neastern=America/New_York|'vm-received' Q\n",
    )
    ten = cfg.effective("10@default")
    assert ten.password == "1234"
    assert ten.password_locked
    assert ten.fullname == "Locked Name"
    assert ten.emails == ("a@example.com", "b@example.com")
    assert ten.pager == "pager@example.com"
    assert ten.tz == "eastern"  # option names are case-insensitive (sample: Tz=european)
    assert ten.zone is not None
    assert ten.zone.timezone == "America/New_York"
    assert ten.zone.say_format == "'vm-received' Q"
    assert ten.saycid
    assert ten.emailsubject == "a=b"  # value split at the first '=' only
    eleven = cfg.effective("11@default")
    assert (eleven.password, eleven.password_locked, eleven.emails) == ("", False, ())


def test_escapes_in_email_subject_and_body(tmp_path: Path) -> None:
    cfg, diags = load_conf(
        tmp_path,
        "[general]\nemailbody=Hi\\n\\tthere\\\\ \\; \\q end\\\n[default]\n1 => 1\n",
    )
    settings = cfg.effective("1@default")
    assert settings.emailbody == "Hi\n\tthere\\ ;  end"
    assert only(diags, Severity.WARNING, "unsupported escape '\\q'").line == 2
    assert only(diags, Severity.WARNING, "incomplete escape").line == 2


def test_mailbox_without_imap_options_is_visible_with_global_imap(tmp_path: Path) -> None:
    """Asterisk bug §6 #29: such a mailbox is invisible there; here it uses [general] IMAP."""
    cfg, diags = load_conf(
        tmp_path,
        IMAP + "authuser=master\nauthpassword=mpw\n[default]\n100 => 1,Plain\n",
    )
    assert not diags.has_errors
    box = cfg.effective("100@default")
    assert box.storage is StorageKind.IMAP
    assert box.imap is not None
    assert box.imap.user == "master"
    assert box.imap.server == "imap.example.com"
    assert not box.imap.master_login
    assert only(diags, Severity.INFO, "without imapuser (100@default)").line == 3


def test_imap_without_imapuser_or_authuser_is_an_error(tmp_path: Path) -> None:
    cfg, diags = load_conf(tmp_path, IMAP + "[default]\n100 => 1,Plain\n")
    error = only(diags, Severity.ERROR, "neither imapuser nor")
    assert (error.line, error.file) == (4, str(tmp_path / "voicemail.conf"))
    assert cfg.effective("100@default").storage is StorageKind.IMAP


def test_authpassword_overrides_imappassword_and_master_login(tmp_path: Path) -> None:
    cfg, diags = load_conf(
        tmp_path,
        IMAP + "authuser=master\nauthpassword=mpw\n[default]\n"
        "1 => 1,A,,,imapuser=alice|imappassword=apw\n",
    )
    assert not diags.has_errors
    imap = cfg.effective("1@default").imap
    assert imap is not None
    assert (imap.user, imap.auth_user, imap.password) == ("alice", "master", "mpw")
    assert imap.master_login


def test_imapsecret_alias_and_password_borrowed_from_same_imapuser(tmp_path: Path) -> None:
    cfg, diags = load_conf(
        tmp_path,
        IMAP + "[default]\n1 => 1,A,,,imapuser=shared|imapsecret=spw\n"
        "2 => 2,B,,,imapuser=shared\n3 => 3,C,,,imapuser=lonely\n",
    )
    assert cfg.effective("1@default").imap.password == "spw"  # type: ignore[union-attr]
    assert cfg.effective("2@default").imap.password == "spw"  # type: ignore[union-attr]
    assert only(diags, Severity.ERROR, "no IMAP password").line == 6


def test_imapvmshareid_is_a_header_tag_not_a_login(tmp_path: Path) -> None:
    cfg, _ = load_conf(
        tmp_path,
        IMAP + "[default]\n1 => 1,A,,,imapuser=alice|imappassword=x|imapvmshareid=group\n",
    )
    box = cfg.effective("1@default")
    assert box.imap is not None
    assert box.imap.user == "alice"
    assert box.extension_tag == "group"


def test_per_mailbox_imap_overrides_and_port_does_not_follow_ssl(tmp_path: Path) -> None:
    cfg, diags = load_conf(
        tmp_path,
        IMAP + "imapflags=ssl\nimapfolder=Voice\n[default]\n"
        "1 => 1,A,,,imapuser=a|imappassword=x\n"
        "2 => 2,B,,,imapuser=b|imappassword=x|imapserver=other|imapport=1143|imapflags=notls"
        "|imapfolder=Mine\n",
    )
    one = cfg.effective("1@default").imap
    two = cfg.effective("2@default").imap
    assert one is not None
    assert two is not None
    assert (one.server, one.port, one.security.mode, one.folder) == (
        "imap.example.com",
        143,
        TlsMode.IMPLICIT,
        "Voice",
    )
    assert (two.server, two.port, two.security.mode, two.folder) == (
        "other",
        1143,
        TlsMode.NONE,
        "Mine",
    )
    assert two.flags == frozenset({"notls"})  # a mailbox's imapflags replaces the global one
    assert only(diags, Severity.WARNING, "port does not change with ssl").line == 3


def test_imap_defaults_and_greeting_folder_spellings(tmp_path: Path) -> None:
    cfg, _ = load_conf(
        tmp_path,
        "[general]\ngreetingsfolder=Later\ngreetingfolder=Wins\n[default]\n"
        "1 => 1,A,,,imapuser=a|imappassword=x\n",
    )
    imap = cfg.effective("1@default").imap
    assert imap is not None
    # imapuser alone selects IMAP, with Asterisk's default server.
    assert (imap.server, imap.port, imap.folder, imap.parent_folder) == (
        "localhost",
        143,
        "INBOX",
        "",
    )
    assert imap.greetings_folder == "Wins"  # greetingfolder is checked first, as in Asterisk
    assert imap.expunge_on_hangup
    assert (imap.read_timeout, imap.open_timeout) == (60, 60)
    assert imap.security.mode is TlsMode.STARTTLS_IF_OFFERED
    assert imap.security.verify_certificate


def test_greetings_folder_defaults_to_imapfolder(tmp_path: Path) -> None:
    cfg, _ = load_conf(
        tmp_path, "[general]\nimapfolder=VM\n[default]\n1 => 1,A,,,imapuser=a|imappassword=x\n"
    )
    assert cfg.effective("1@default").imap.greetings_folder == "VM"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("maxmsg=abc", "not an integer"),
        ("maxmsg=10000", "above the maximum 9999"),
        ("maxmsg=-1", "below the minimum"),
        ("review=perhaps", "not a boolean"),
        ("imapport=99999", "above the maximum"),
        ("format=nonsense", "no usable format"),
        ("charset=no-such-charset", "not a character set"),
        ("listen-control-stop-key=xyz", "DTMF"),
        ("passwordlocation=somewhere", "neither"),
    ],
)
def test_invalid_general_values_are_errors_at_their_line(
    tmp_path: Path, line: str, fragment: str
) -> None:
    cfg, diags = load_conf(tmp_path, f"[general]\n\n{line}\n")
    error = only(diags, Severity.ERROR, fragment)
    assert error.line == 3
    key = line.split("=")[0]
    assert cfg.general.values[key] == cfg.general.values[key]  # default kept, no crash
    assert key not in cfg.general.explicit


def test_invalid_mailbox_option_is_an_error_and_keeps_general(tmp_path: Path) -> None:
    cfg, diags = load_conf(tmp_path, "[general]\nmaxmsg=7\n[default]\n1 => 1,A,,,maxmsg=lots\n")
    assert only(diags, Severity.ERROR, "maxmsg: 'lots' is not an integer").line == 4
    assert cfg.effective("1@default").maxmsg == 7


def test_unknown_directives_warn_with_did_you_mean(tmp_path: Path) -> None:
    _, diags = load_conf(
        tmp_path,
        "[general]\nmaxmgs=10\nfrobnicate=1\nimapuser=x\n[default]\n"
        "1 => 1,A,,,atach=yes|pbxskip=yes\n",
    )
    assert "did you mean 'maxmsg'" in only(diags, Severity.WARNING, "maxmgs").message
    assert "did you mean" not in only(diags, Severity.WARNING, "frobnicate").message
    assert only(diags, Severity.WARNING, "per mailbox").line == 4
    assert "did you mean 'attach'" in only(diags, Severity.WARNING, "atach").message
    assert only(diags, Severity.WARNING, "only be set in [general]").line == 6


def test_duplicate_mailbox_is_an_error_and_the_first_is_kept(tmp_path: Path) -> None:
    cfg, diags = load_conf(
        tmp_path, "[default]\n1 => 1,First\n2 => 2,Two\n[default]\n1 => 9,Second\n"
    )
    error = only(diags, Severity.ERROR, "defined twice")
    assert error.line == 5
    assert "voicemail.conf:2" in error.message
    assert cfg.effective("1@default").fullname == "First"


def test_searchcontexts_finds_a_bare_number_in_any_context(tmp_path: Path) -> None:
    cfg, _ = load_conf(tmp_path, "[general]\nsearchcontexts=yes\n[a]\n1 => 1\n[b]\n2 => 2\n")
    assert cfg.effective("2").context == "b"
    assert cfg.find("1") is not None
    cfg, _ = load_conf(tmp_path, "[a]\n1 => 1\n[default]\n2 => 2\n")
    assert cfg.find("1") is None  # without searchcontexts only [default] is searched
    assert cfg.effective("2").context == "default"


def test_searchcontexts_requires_unique_numbers(tmp_path: Path) -> None:
    _, diags = load_conf(tmp_path, "[general]\nsearchcontexts=yes\n[a]\n1 => 1\n[b]\n1 => 1\n")
    assert only(diags, Severity.ERROR, "searchcontexts=yes").line == 6


def test_zones_and_tz_validation(tmp_path: Path) -> None:
    cfg, diags = load_conf(
        tmp_path,
        "[general]\ntz=central\n[zonemessages]\n"
        "central=America/Chicago|'vm-received' q\n"
        "mars=Mars/Olympus_Mons|x\n"
        "broken=America/Chicago\n"
        "comma=Europe/Paris,'vm-received' a\n"
        "[default]\n1 => 1\n2 => 2,,,,tz=centrall\n",
    )
    assert set(cfg.zones) == {"central", "comma"}
    assert cfg.zones["comma"].timezone == "Europe/Paris"
    assert only(diags, Severity.ERROR, "Mars/Olympus_Mons").line == 5
    assert only(diags, Severity.ERROR, "zone 'broken'").line == 6
    unknown = only(diags, Severity.ERROR, "tz 'centrall'")
    assert unknown.line == 10
    assert "did you mean 'central'" in unknown.message
    assert cfg.effective("1@default").zone.timezone == "America/Chicago"  # type: ignore[union-attr]


def test_aliases_context(tmp_path: Path) -> None:
    cfg, diags = load_conf(
        tmp_path,
        "[general]\naliasescontext=myaliases\n[myaliases]\n"
        "1234@devices => 1234@default\n99@devices => 99@default\n[default]\n1234 => 1\n",
    )
    assert [m.id for m in cfg.mailboxes()] == ["1234@default"]  # the aliases are not mailboxes
    assert cfg.resolve_alias("1234@devices") == "1234@default"
    assert only(diags, Severity.WARNING, "not a mailbox").line == 5


def test_templates_are_not_contexts_and_directives_in_contexts_warn(tmp_path: Path) -> None:
    cfg, diags = load_conf(
        tmp_path,
        "[base](!)\n1 => 1,From Template\n[sales](base)\nmaxmsg=10\n2 => 2\n",
    )
    assert [m.id for m in cfg.mailboxes()] == ["1@sales", "2@sales"]
    assert only(diags, Severity.WARNING, "looks like a directive").line == 4


def test_star_mailbox_and_star_password_are_errors(tmp_path: Path) -> None:
    cfg, diags = load_conf(tmp_path, "[default]\n*1 => 1\n2 => *9,Bad\n")
    assert only(diags, Severity.ERROR, "begins with '*'").line == 2
    assert only(diags, Severity.ERROR, "cannot begin with '*'").line == 3
    assert [m.id for m in cfg.mailboxes()] == ["2@default"]


def test_deprecated_spellings_and_second_general(tmp_path: Path) -> None:
    cfg, diags = load_conf(
        tmp_path,
        "[general]\nmaxmessage=99\nmaxsecs=120\n[general]\nmaxmsg=5\n[default]\n1 => 1\n",
    )
    settings = cfg.effective("1@default")
    assert settings.maxsecs == 120  # maxsecs wins over maxmessage wherever it is written
    assert settings.maxmsg == 100  # the second [general] is ignored, as in Asterisk
    assert only(diags, Severity.WARNING, "deprecated").line == 2
    assert only(diags, Severity.WARNING, "second [general]").line == 4


def test_attachfmt_must_be_a_recorded_format(tmp_path: Path) -> None:
    cfg, diags = load_conf(
        tmp_path,
        "[general]\nformat=wav49|gsm\n[default]\n"
        "1 => 1,,,,attachfmt=gsm\n2 => 2,,,,attachfmt=ogg\n",
    )
    assert cfg.effective("1@default").attachfmt == "gsm"
    assert cfg.effective("2@default").attachfmt == "wav49"
    assert cfg.effective("2@default").stored_format == "wav49"
    assert only(diags, Severity.WARNING, "attachfmt 'ogg'").line == 5


def test_storage_is_spool_without_imap_settings(tmp_path: Path) -> None:
    cfg, diags = load_conf(tmp_path, "[general]\nmoveheard=no\n[default]\n1 => 1\n")
    assert cfg.storage is StorageKind.SPOOL
    assert messages(diags) == []  # moveheard is meaningful with the spool: no note


def test_lookup_is_case_insensitive_and_unknown_raises(tmp_path: Path) -> None:
    cfg, _ = load_conf(tmp_path, "[Default]\nAbc => 1\n")
    assert cfg.find("abc", "default") is not None
    assert cfg.effective("ABC@DEFAULT").mailbox == "Abc"
    assert cfg.find("zzz") is None
    with pytest.raises(KeyError):
        cfg.effective("zzz@default")


def test_general_settings_accessors(tmp_path: Path) -> None:
    cfg, _ = load_conf(
        tmp_path,
        "[general]\nvm-login=my-login\nlisten-control-stop-key=9\npollfreq=5\n"
        "searchcontexts=yes\nmailcmd=/bin/true\n",
    )
    general = cfg.general
    assert general.prompt("vm-login") == "my-login"
    assert general.prompt("vm-password") == "vm-password"
    assert general.prompt("vm-prepend-timeout") == "vm-then-pound"
    assert general.listen_keys == {
        "forward": "#", "reverse": "*", "pause": "0", "restart": "2", "stop": "9",
    }  # fmt: skip
    assert general.number("pollfreq") == 5
    assert general.flag("searchcontexts")
    assert general.text("mailcmd") == "/bin/true"
    assert general.is_set("mailcmd")
    assert not general.is_set("charset")
    assert general["charset"] == "ISO-8859-1"


def test_misspelt_reserved_section_warns(tmp_path: Path) -> None:
    _, diags = load_conf(tmp_path, "[genral]\nmaxmsg=5\n")
    assert "did you mean 'general'" in only(diags, Severity.WARNING, "is read as").message


def test_empty_imap_values_min_max_and_email_checks(tmp_path: Path) -> None:
    _, diags = load_conf(
        tmp_path,
        "[general]\nimapserver=\ntz=nowhere\npollfreq=0\n[default]\n"
        "1 => 1,A,noat,,imapuser=a|imappassword=x|imapfolder=|minsecs=20|maxsecs=10\n"
        "2 => 2,B,,,imapuser=b|imappassword=x\n",
    )
    assert only(diags, Severity.ERROR, "imapserver is empty").line == 2
    assert only(diags, Severity.ERROR, "imapfolder is empty").line == 6
    assert only(diags, Severity.ERROR, "tz 'nowhere'").line == 3  # once, not per mailbox
    assert only(diags, Severity.ERROR, "pollfreq").line == 4
    assert only(diags, Severity.WARNING, "above maxsecs").line == 6
    assert only(diags, Severity.WARNING, "'noat' has no '@'").line == 6


@pytest.mark.parametrize("value", ["1_0", "١٠", "0x10", "nan", "inf", "1e400"])
def test_numbers_are_ascii_decimal_only(tmp_path: Path, value: str) -> None:
    cfg, diags = load_conf(tmp_path, f"[general]\nmaxmsg={value}\nvolgain={value}\n")
    assert len(diags.errors) == 2
    assert cfg.general["maxmsg"] == 100
    assert cfg.general["volgain"] == 0.0
