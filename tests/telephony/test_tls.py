"""SIP over TLS: `imapvm serve` answers OPTIONS on its TLS port, reloads a renewed certificate
on SIGHUP, `imapvm doctor` shows the certificate; NOTIFY reuses a subscriber's TLS connection."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest

from imapvm.telephony.channel import SipChannel
from imapvm.telephony.message_summary import MessageSummary
from imapvm.telephony.server import SipServer, SipSettings
from imapvm.telephony.transport_tls import TlsSettings
from tests.e2e.serve import start_serve
from tests.support.net import free_port

from .tls_support import TlsClient, make_cert, request

pytestmark = [pytest.mark.timeout(90)]


async def test_serve_answers_options_over_tls_and_reloads_on_sighup(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path / "certs", "imapvm.test")
    tls_port = free_port()
    serve = await start_serve(tmp_path / "run", "--set", f"sip.tls_listen=127.0.0.1:{tls_port}",
                              "--set", f"sip.tls_certificate={cert}",
                              "--set", f"sip.tls_private_key={key}",
                              "--set", f"paths.spool={tmp_path / 'spool'}",
                              "--set", f"paths.outbox={tmp_path / 'outbox'}")
    try:
        await serve.wait_healthy()
        client = await TlsClient.connect(tls_port, ca=cert)  # verified against our certificate
        uri = f"sip:imapvm@127.0.0.1:{tls_port};transport=tls"
        client.send(request("OPTIONS", uri, client.local_port, "opt1"))
        answer = await client.message()
        assert answer.startswith("SIP/2.0 200 OK")
        assert "Via: SIP/2.0/TLS" in answer
        assert "imapvm.test" in client.peer_names
        client.close()
        # a renewed certificate in the same files, then SIGHUP: new connections get it
        new_cert, new_key = make_cert(tmp_path / "renewed", "renewed.test")
        cert.write_bytes(new_cert.read_bytes())
        key.write_bytes(new_key.read_bytes())
        serve.signal(signal.SIGHUP)
        await serve.wait_log("TLS certificate reloaded")
        again = await TlsClient.connect(tls_port, ca=cert)
        again.send(request("OPTIONS", uri, again.local_port, "opt2"))
        assert (await again.message()).startswith("SIP/2.0 200 OK")
        assert "renewed.test" in again.peer_names
        again.close()
    finally:
        assert await serve.stop() == 0


async def test_doctor_shows_the_certificate(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path / "certs", "voicemail.example", days=10)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "imapvm", "doctor", "--json", "--set",
        f"sip.tls_listen=127.0.0.1:{free_port()}", "--set", f"sip.tls_certificate={cert}",
        "--set", f"sip.tls_private_key={key}", "--set", f"sip.listen=127.0.0.1:{free_port()}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    report = json.loads(out)
    checks = report["checks"] if isinstance(report, dict) else report
    tls = [c for c in checks if str(c.get("item", "")).startswith("TLS ")]
    assert len(tls) == 1, (out, err)
    assert "DNS:voicemail.example" in tls[0]["detail"]
    assert "IP Address:127.0.0.1" in tls[0]["detail"]
    assert "(9 days)" in tls[0]["detail"] or "(10 days)" in tls[0]["detail"]
    assert "renew it soon" in tls[0]["detail"]


async def test_notify_reuses_the_subscribers_tls_connection(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path / "certs", "imapvm.test")

    async def lookup(mailbox: str) -> MessageSummary:
        return MessageSummary(1, 2)

    async def no_calls(channel: SipChannel) -> None:
        raise AssertionError("no call expected")

    settings = SipSettings(host="127.0.0.1", port=0, rtp_ports=(36000, 36998),
                           tls=TlsSettings(cert, key), tls_port=0)
    async with SipServer(settings, no_calls, mwi_lookup=lookup) as server:
        tls = server.tls_address
        assert tls is not None
        client = await TlsClient.connect(tls[1], ca=cert)
        uri = f"sip:1234@127.0.0.1:{tls[1]};transport=tls"
        client.send(request("SUBSCRIBE", uri, client.local_port, "sub1",
                            "Event: message-summary\r\nAccept: application/simple-message-summary"
                            "\r\nExpires: 600\r\n"))
        got = [await client.message(), await client.message()]
        ok = next(m for m in got if m.startswith("SIP/2.0 "))
        notify = next(m for m in got if m.startswith("NOTIFY "))
        assert ok.startswith("SIP/2.0 200") or ok.startswith("SIP/2.0 202")
        assert "Voice-Message: 1/2" in notify
        assert "Via: SIP/2.0/TLS" in notify
        assert f":{tls[1]};transport=tls" in notify  # our Contact names the TLS port
        # a later change goes down the same connection, not a new one
        assert server.publish_mwi("1234", MessageSummary(0, 3)) >= 1
        later = await client.message()
        assert later.startswith("NOTIFY ")
        assert "Voice-Message: 0/3" in later
        client.close()
