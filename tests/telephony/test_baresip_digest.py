"""A real phone outside the trusted networks: baresip registers and subscribes with its SIP
secret through our digest challenge, and is refused with the mailbox PIN.

baresip 1.0 (Debian 12) knows only MD5 and gives up ("Function not implemented") when any
challenge names another algorithm, even after an MD5 one: such phones need
``sip.digest_algorithms = ["MD5"]``, which is what this test runs with."""

from __future__ import annotations

from pathlib import Path

import pytest

from imapvm.telephony.channel import SipChannel
from imapvm.telephony.message_summary import MessageSummary
from imapvm.telephony.server import SipServer, SipSettings
from tests.e2e.serve import eventually
from tests.support.baresip import start_baresip

pytestmark = pytest.mark.timeout(60)

SECRET = "bR4-long-random-SIP-secret-x9"


async def _lookup(mailbox: str) -> MessageSummary:
    return MessageSummary(1, 4) if mailbox == "1234" else MessageSummary(0, 0)


async def _no_calls(channel: SipChannel) -> None:
    raise AssertionError("no call expected")


@pytest.mark.parametrize("password", [SECRET, "4242"])
async def test_baresip_logs_in_with_its_secret_not_the_pin(
        tmp_path: Path, caller_wav: Path, password: str) -> None:
    # baresip speaks from 127.0.0.1, which is not trusted here: it must authenticate
    settings = SipSettings(host="127.0.0.1", port=0, trusted_networks=("192.0.2.0/24",),
                           rtp_ports=(33000, 33998), digest_algorithms=("MD5",))
    async with SipServer(settings, _no_calls, mwi_lookup=_lookup,
                         credentials={"1234": SECRET}.get) as server:
        host, port = server.address
        phone = await start_baresip(
            tmp_path / "baresip", caller_wav,
            account=(f"<sip:1234@{host}:{port}>;auth_pass={password};regint=600;mwi=yes;"
                     "audio_codecs=PCMU"))
        log = tmp_path / "baresip" / "stdout.log"
        try:
            if password == SECRET:
                await eventually(lambda: "Voice-Message: 1/4" in log.read_text(), 15)
                assert len(server.core.notifier.subscriptions) == 1
            else:
                await eventually(lambda: server.core.stats["auth_failures"] >= 1, 15)
                assert server.core.notifier.subscriptions == {}
                assert "Voice-Message" not in log.read_text()
        finally:
            await phone.stop()
