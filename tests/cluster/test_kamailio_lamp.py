"""The cluster tests' and failover bench's lamp phone against a raw-socket stand-in for
Kamailio: a 5xx to SUBSCRIBE is retried with the next CSeq, a datagram that is not SIP is
skipped, and the NOTIFY that follows is still heard and answered."""

from __future__ import annotations

import asyncio
import socket

from imapvm.telephony.message_summary import MessageSummary
from imapvm.telephony.sip.message import SipRequest, parse_message
from tests.cluster.test_kamailio_edge import KamailioLamp
from tests.telephony.pyphone import PyPhone


def answer(req: SipRequest, status: int, extra: str = "") -> bytes:
    head = f"SIP/2.0 {status} Reason\r\n"
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        head += f"{name}: {req.headers.get(name)}\r\n"
    return (head + extra + "Content-Length: 0\r\n\r\n").encode()


async def test_refused_subscribe_is_retried_and_garbage_is_skipped() -> None:
    loop = asyncio.get_running_loop()
    proxy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    proxy.bind(("127.0.0.1", 0))
    proxy.setblocking(False)
    phone = PyPhone("127.0.0.1", proxy.getsockname())
    await phone.open()
    lamp = KamailioLamp(phone, "1234")
    try:
        lamp.subscribe()
        data, addr = await loop.sock_recvfrom(proxy, 65535)
        first = parse_message(data)
        assert isinstance(first, SipRequest)
        assert first.cseq == (1, "SUBSCRIBE")
        proxy.sendto(answer(first, 500), addr)  # the presence database is busy
        proxy.sendto(b"\x00\x01 not SIP at all", addr)
        data, addr = await asyncio.wait_for(loop.sock_recvfrom(proxy, 65535), 10)
        again = parse_message(data)
        assert isinstance(again, SipRequest)
        assert again.cseq == (2, "SUBSCRIBE")
        proxy.sendto(answer(again, 200, "Expires: 600\r\n"), addr)
        body = b"Messages-Waiting: yes\r\nVoice-Message: 1/0 (0/0)\r\n"
        port = proxy.getsockname()[1]
        notify = (
            f"NOTIFY sip:phone@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port}"
            ";branch=z9hG4bKn1\r\n"
            f"From: {again.headers.get('To')};tag=k1\r\nTo: {again.headers.get('From')}\r\n"
            f"Call-ID: {again.headers.get('Call-ID')}\r\nCSeq: 1 NOTIFY\r\n"
            "Event: message-summary\r\nSubscription-State: active;expires=600\r\n"
            "Content-Type: application/simple-message-summary\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        proxy.sendto(notify, addr)
        await lamp.wait_state(MessageSummary(1, 0), within=10)
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(proxy, 65535), 10)
        assert data.startswith(b"SIP/2.0 200")  # the NOTIFY was answered
        assert lamp.subscribe_status == 200
        assert lamp.subscribe_retries == 1
        assert lamp.not_sip == 1
    finally:
        lamp._task.cancel()
        proxy.close()
