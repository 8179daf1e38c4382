"""Raw SIP messages for the core's unit tests (what a phone or sipp would send)."""

from __future__ import annotations

SOURCE = ("10.0.0.1", 5062)

OFFER = (
    "v=0\r\no=alice 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\na=sendrecv\r\n"
)


def request(
    method: str,
    *,
    branch: str = "z9hG4bK-1",
    call_id: str = "call-1",
    cseq: int = 1,
    cseq_method: str | None = None,
    to_tag: str | None = None,
    from_tag: str = "ftag",
    uri: str = "sip:1234@127.0.0.1",
    body: str = "",
    content_type: str = "application/sdp",
    extra: str = "",
    rport: bool = True,
) -> bytes:
    to = "<sip:1234@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP 10.0.0.1:5062;branch={branch}" + (";rport" if rport else ""),
        "Max-Forwards: 70",
        f'From: "Alice" <sip:alice@10.0.0.1>;tag={from_tag}',
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        "Contact: <sip:alice@10.0.0.1:5062>",
    ]
    if extra:
        lines.append(extra.rstrip("\r\n"))
    if body:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def invite(**kw: object) -> bytes:
    kw.setdefault("body", OFFER)
    return request("INVITE", **kw)  # type: ignore[arg-type]
