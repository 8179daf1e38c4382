"""The [sip] keys imapvm serve needs beyond listen/trusted."""

from __future__ import annotations

from pathlib import Path

from imapvm.config import load


def test_sip_keys_and_their_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[sip]\nadvertise = "192.0.2.5"\nrtp_ports = "12000-12100"\n'
                    'check_users = ["*98"]\ntcp = false\n')
    loaded = load(None, good, voicemail_required=False)
    sip = loaded.settings.sip
    assert (sip.advertise, sip.rtp_ports, sip.check_users, sip.tcp) == (
        "192.0.2.5", (12000, 12100), ("*98",), False)
    bad = tmp_path / "bad.toml"
    bad.write_text('[sip]\nadvertise = "pbx.example"\nrtp_ports = "70000-80000"\n')
    loaded = load(None, bad, voicemail_required=False)
    messages = [str(d) for d in loaded.diagnostics]
    assert any("bad.toml:2" in m and "not an IP address" in m for m in messages)
    assert any("bad.toml:3" in m and "rtp_ports" in m for m in messages)
    assert not loaded.ok
