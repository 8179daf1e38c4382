"""The realistic test configuration, compared with its checked-in effective configuration.

Regenerate after an intended change with `IMAPVM_UPDATE_GOLDEN=1 pytest tests/config`, then review
the diff of `data/voicemail.golden.json` like code.
"""

from __future__ import annotations

import json

from imapvm.config.loader import load
from imapvm.config.model import StorageKind
from imapvm.config.render import report_json
from tests.support import golden

from .helpers import DATA

GOLDEN = DATA / "voicemail.golden.json"


def effective_document() -> dict[str, object]:
    loaded = load(DATA / "voicemail.conf", DATA / "imapvm.toml")
    document = report_json(loaded)
    # Paths differ between checkouts; make them relative to the data directory.
    text = json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True)
    return json.loads(text.replace(str(DATA) + "/", ""))


def test_golden_effective_configuration() -> None:
    document = effective_document()
    if golden.updating():
        GOLDEN.write_text(
            json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n",
            encoding="utf-8",
        )
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert document == expected


def test_realistic_configuration_is_clean_and_complete() -> None:
    loaded = load(DATA / "voicemail.conf", DATA / "imapvm.toml")
    assert not loaded.diagnostics.errors
    assert not loaded.diagnostics.warnings
    vm = loaded.voicemail
    assert len(vm.files) == 3
    assert vm.storage is StorageKind.IMAP
    assert [m.id for m in vm.mailboxes()] == [
        "1234@default", "4200@default", "4300@default", "4310@default", "4069@default",
        "4073@default", "4110@default", "4235@default", "4400@default", "4401@default",
        "4000@other", "1234@other", "111@acme", "112@acme",
    ]  # fmt: skip
    pete = vm.effective("111@acme")
    assert pete.fullname == "Pete Müller"  # from a Latin-1, CRLF file
    assert pete.zone is not None
    assert pete.zone.timezone == "America/Chicago"
    andy = vm.effective("4401@default")
    assert andy.fromstring == "Escaped ; semicolon"
    assert andy.emailsubject == "Tab\there"


def test_no_secret_in_the_document() -> None:
    text = json.dumps(effective_document())
    for secret in ("m4st3r-s3cret", "ex4mple", "g3tbusy", "c0mp4ny", "s4les", "amis3cret"):
        assert secret not in text
    assert '"***"' in text
