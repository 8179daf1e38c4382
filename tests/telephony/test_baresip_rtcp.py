"""RTCP with a real phone: baresip's reports reach us over plain RTP and as SRTCP on an SRTP
call (TLS + SDES), we read its report block on our stream, and the call's end log line carries
loss and jitter of both directions (test-infra.md §5)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from imapvm.telephony.channel import SipChannel
from imapvm.telephony.server import SipServer, SipSettings
from tests.support.baresip import start_baresip

from .conftest import tone

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


@pytest.mark.parametrize("transport", ["udp", "tls+srtp"])
async def test_baresip_rtcp_reports_give_loss_and_jitter_in_the_log(
    tmp_path: Path, caller_wav_padded: Path, caplog: pytest.LogCaptureFixture, transport: str
) -> None:
    from imapvm.telephony.transport_tls import TlsSettings

    from .tls_support import make_cert

    caplog.set_level("INFO", logger="imapvm.telephony.server")
    results: dict[str, object] = {}
    reported = asyncio.Event()

    async def handler(channel: SipChannel) -> None:
        await channel.answer()
        rtp = channel.rtp
        assert rtp is not None
        assert rtp.rtcp is not None
        results["srtp"] = rtp.srtp is not None
        for _ in range(60):  # we speak until the phone has reported on what we send (<= 30 s)
            if rtp.rtcp.peer.reports and rtp.stats.extra.get("rtcp_sent", 0):
                break
            await channel.play(tone(440, 0.5))
        results["peer_reports"] = rtp.rtcp.peer.reports
        results["rtcp_sent"] = rtp.stats.extra.get("rtcp_sent", 0)
        results["rtcp_received"] = rtp.stats.extra.get("rtcp_received", 0)
        results["srtp_auth_failures"] = rtp.stats.extra.get("srtp_auth_failures", 0)
        reported.set()
        results["record"] = await channel.record(max_seconds=20, terminators="#")
        await channel.hangup()

    tls = None
    account = None
    extra = "module rtcpsummary.so\n"
    if transport == "tls+srtp":
        cert, key = make_cert(tmp_path / "certs", "imapvm.test")
        tls = TlsSettings(cert, key)
        account = ("<sip:caller@127.0.0.1;transport=tls>;regint=0;"
                   "audio_codecs=PCMU;mwi=no;mediaenc=srtp-mand")
        extra += f"sip_cafile {cert}\nmodule srtp.so\n"
    settings = SipSettings(host="127.0.0.1", port=0, rtp_ports=(33000, 33998), tls=tls,
                           tls_port=0, srtp="required" if tls else "optional")
    async with SipServer(settings, handler) as server:
        host, port = server.address
        dial = f"sip:1234@{host}:{port}"
        if server.tls_address is not None:
            dial = f"sip:1234@{host}:{server.tls_address[1]};transport=tls"
        phone = await start_baresip(tmp_path / "baresip", caller_wav_padded, dial=dial,
                                    codec="PCMU", account=account, extra_config=extra,
                                    kill_after=80)
        try:
            await phone.wait_event("CALL_ESTABLISHED")
            await asyncio.wait_for(reported.wait(), 40)
            await phone.send_digit("#")
            await phone.wait_event("CALL_CLOSED", within=15)
        finally:
            await phone.stop()
        for _ in range(100):  # the end-of-call line follows the handler's hang-up
            if "media: received" in caplog.text:
                break
            await asyncio.sleep(0.05)

    assert results["srtp"] is (transport == "tls+srtp")
    assert results["srtp_auth_failures"] == 0
    for key in ("rtcp_received", "rtcp_sent", "peer_reports"):  # (S)RTCP both ways
        value = results[key]
        assert isinstance(value, int)
        assert value >= 1, key
    line = re.search(r"call \S+ media: received (\d+), lost (\d+) \(([\d.]+)%\), "
                     r"jitter ([\d.]+) ms; the caller reports lost (-?\d+) "
                     r"\(([\d.]+)% lately\), jitter ([\d.]+) ms", caplog.text)
    assert line is not None, caplog.text[-2000:]
    received, lost = int(line.group(1)), int(line.group(2))
    print(f"{transport}: {line.group(0)}")
    assert received > 50  # the caller's speech, 20 ms packets
    # loopback: little or nothing lost (the '#' events count: they share the sequence space)
    assert lost <= received // 10
    assert float(line.group(4)) < 200  # measured at the kernel's arrival time, not our read
    assert abs(int(line.group(5))) <= 50  # the phone lost little of ours either
    stdout = (tmp_path / "baresip" / "stdout.log").read_text(errors="replace")
    summary = re.search(r"EX=BareSip;.*", stdout)  # baresip's rtcpsummary: its own view
    print(summary.group(0) if summary else "baresip printed no RTCP summary")
