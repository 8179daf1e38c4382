"""An RFC 4475-style corpus of hostile SIP requests, written for imapvm (not copied from the
RFC): each case is the datagram and the status RFC 4475 says a UAS answers, or None when the
request cannot be answered (too broken to build a response) and must be dropped quietly.

Used by the core's unit tests, the live-server test and the fuzzing test as mutation seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    status: int | None  # the answer RFC 4475 expects, None: dropped
    rfc: str  # the RFC 4475 section the case mirrors


def _msg(start: str, headers: list[str], body: str = "", length: int | None = None) -> bytes:
    lines = [start, *headers]
    if length is not None or body:
        lines.append(f"Content-Length: {len(body.encode()) if length is None else length}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def _base(method: str, branch: str, call_id: str, *, cseq_method: str | None = None,
          from_: str | None = None) -> list[str]:
    return [
        f"Via: SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bK{branch};rport",
        "Max-Forwards: 70",
        from_ or f"From: <sip:caller@{HOST}>;tag=t{branch}",
        f"To: <sip:1234@{HOST}>",
        f"Call-ID: {call_id}",
        f"CSeq: 1 {cseq_method or method}",
        "Contact: <sip:caller@192.0.2.99:5060>",
    ]


SDP = ("v=0\r\no=- 1 1 IN IP4 192.0.2.99\r\ns=-\r\nc=IN IP4 192.0.2.99\r\nt=0 0\r\n"
       "m=audio 4000 RTP/AVP 0\r\n")


def corpus() -> list[Case]:
    c: list[Case] = []
    uri = f"sip:1234@{HOST}"
    # 3.1.1.1-ish: a valid but tortuous request (folding, compact forms, odd spacing): answered
    c.append(Case("tortuous-options", (
        f"OPTIONS {uri} SIP/2.0\r\n"
        "v:  SIP/2.0/UDP 192.0.2.99:5060 ;branch=z9hG4bKtort1 ;rport\r\n"
        "Max-Forwards:\t70\r\n"
        f"f: \"caller \\\"quoted\\\"\" <sip:caller@{HOST}>\r\n ;tag=tort1\r\n"
        f"t: <sip:1234@{HOST}>\r\n"
        "i: tortuous-1\r\n"
        "CSeq:   8\r\n    OPTIONS\r\n"
        "Unknown-Header: with, commas; and=params\r\n"
        "l: 0\r\n\r\n").encode(), 200, "3.1.1.1"))
    # 3.1.2.16: a version no one speaks
    c.append(Case("sip-version-7", _msg(f"OPTIONS {uri} SIP/7.0",
                                        _base("OPTIONS", "ver7", "version-7"), length=0),
                  505, "3.1.2.16"))
    # 3.1.2.? : two Content-Length headers that disagree
    c.append(Case("conflicting-content-length", _msg(
        f"INVITE {uri} SIP/2.0",
        [*_base("INVITE", "cl2", "content-length-2"), "Content-Type: application/sdp",
         "Content-Length: 10"], SDP), 400, "3.1.2.13"))
    # 3.1.2.? : Content-Length larger than the body
    c.append(Case("content-length-too-large", _msg(
        f"OPTIONS {uri} SIP/2.0", _base("OPTIONS", "clbig", "content-length-big"),
        length=9999), 400, "3.1.2.12"))
    # negative Content-Length
    c.append(Case("negative-content-length", _msg(
        f"OPTIONS {uri} SIP/2.0", _base("OPTIONS", "clneg", "content-length-neg"),
        length=-1), 400, "3.1.2.3"))
    # 3.1.2.5: an unterminated quoted display name
    c.append(Case("unterminated-quote", _msg(
        f"INVITE {uri} SIP/2.0",
        _base("INVITE", "quot", "unterminated-quote",
              from_=f'From: "Bob <sip:caller@{HOST}>;tag=quot'), length=0), 400, "3.1.2.5"))
    # 3.1.2.? : request method and CSeq method differ
    c.append(Case("cseq-method-mismatch", _msg(
        f"OPTIONS {uri} SIP/2.0", _base("OPTIONS", "mism", "cseq-mismatch",
                                        cseq_method="INVITE"), length=0), 400, "3.1.2.14"))
    # 3.1.2.? : Max-Forwards far out of range
    c.append(Case("max-forwards-huge", _msg(
        f"OPTIONS {uri} SIP/2.0",
        [h if not h.startswith("Max-Forwards") else "Max-Forwards: 300"
         for h in _base("OPTIONS", "mfhuge", "max-forwards-huge")], length=0), 400, "3.1.2.11"))
    # 3.1.2.? : a Request-URI scheme we do not know
    c.append(Case("unknown-uri-scheme", _msg(
        "OPTIONS nobodyknowsthisscheme:totallyopaquecontent SIP/2.0",
        _base("OPTIONS", "scheme", "unknown-scheme"), length=0), 416, "3.3.5"))
    # 3.3.? : a well-formed request with a method no one knows, outside any dialog
    c.append(Case("unknown-method", _msg(
        f"NEWMETHOD {uri} SIP/2.0", _base("NEWMETHOD", "newm", "unknown-method"), length=0),
        501, "3.3.3"))
    # 3.1.2.? : oversize: one 28 KB header (413/513; we answer 513 Message Too Large)
    c.append(Case("oversize-header", _msg(
        f"OPTIONS {uri} SIP/2.0",
        [*_base("OPTIONS", "big", "oversize-header"), "X-Padding: " + "a" * 28_000],
        length=0), 513, "3.1.2.?"))
    # many headers
    c.append(Case("too-many-headers", _msg(
        f"OPTIONS {uri} SIP/2.0",
        [*_base("OPTIONS", "many", "too-many-headers"), *(f"X-H{i}: x" for i in range(300))],
        length=0), 513, "3.1.2.?"))
    # 3.1.2.? : NUL in a header: not text, not answerable
    c.append(Case("nul-in-header", _msg(
        f"OPTIONS {uri} SIP/2.0",
        [*_base("OPTIONS", "nul", "nul-header"), "Subject: a\x00b"], length=0),
        400, "3.1.2.?"))
    # 3.1.2.? : missing Call-ID: no response can be built, so it is dropped
    c.append(Case("missing-call-id", _msg(
        f"OPTIONS {uri} SIP/2.0",
        [h for h in _base("OPTIONS", "nocid", "x") if not h.startswith("Call-ID")], length=0),
        None, "3.1.2.18"))
    # 3.1.2.? : a start line that is not SIP
    c.append(Case("garbage-start-line", b"HELLO WORLD\r\n\r\n", None, "3.1.2.?"))
    # 3.1.2.? : a Via that does not parse
    c.append(Case("bad-via", _msg(
        f"OPTIONS {uri} SIP/2.0",
        ["Via: SIP/2.0/UDP", *_base("OPTIONS", "bvia", "bad-via")[1:]], length=0),
        None, "3.1.2.?"))
    # 3.1.2.6/7/8: white space where the request line has none (embedded, doubled, trailing)
    for name, line in (("lws-in-request-uri", f"INVITE sip:1234@{HOST}; lr SIP/2.0"),
                       ("double-spaces", f"OPTIONS  sip:1234@{HOST}  SIP/2.0"),
                       ("trailing-space", f"OPTIONS sip:1234@{HOST} SIP/2.0 ")):
        method = line.split()[0]
        c.append(Case(name, _msg(line, _base(method, name[:6], name), length=0), 400, "3.1.2.7"))
    # 3.1.2.4: scalar fields with overlarge values. A response copies the CSeq, and one that
    # copied this one would be as broken as the request: dropped (the RFC's "if possible").
    c.append(Case("overlarge-cseq", _msg(
        f"OPTIONS {uri} SIP/2.0",
        [h if not h.startswith("CSeq") else "CSeq: 36893488147419103232 OPTIONS"
         for h in _base("OPTIONS", "bigcs", "overlarge-cseq")], length=0), None, "3.1.2.4"))
    c.append(Case("overlarge-max-forwards-and-expires", _msg(
        f"OPTIONS {uri} SIP/2.0",
        [h if not h.startswith("Max-Forwards") else "Max-Forwards: 4294967296"
         for h in _base("OPTIONS", "bigmf", "overlarge-mf")] + ["Expires: 99999999999999"],
        length=0), 400, "3.1.2.4"))
    # 3.3.? : a single-valued header given twice
    c.append(Case("two-from-headers", _msg(
        f"OPTIONS {uri} SIP/2.0",
        [*_base("OPTIONS", "2from", "two-from"), f"From: <sip:other@{HOST}>;tag=x"], length=0),
        400, "3.3.?"))
    # 3.1.2.18: an unknown method whose CSeq names another
    c.append(Case("unknown-method-cseq-mismatch", _msg(
        f"NEWMETHOD {uri} SIP/2.0", _base("NEWMETHOD", "nmm", "nm-mismatch",
                                          cseq_method="INVITE"), length=0), 400, "3.1.2.18"))
    # 3.3.?: a body we do not understand
    c.append(Case("unknown-content-type", _msg(
        f"INVITE {uri} SIP/2.0",
        [*_base("INVITE", "uct", "unknown-content-type"), "Content-Type: application/nobody"],
        "<nobody/>"), 415, "3.3.?"))
    return c


def options(call_id: str = "alive", branch: str = "alive") -> bytes:
    """A plain OPTIONS: the server answers 200 when it is alive."""
    return _msg(f"OPTIONS sip:1234@{HOST} SIP/2.0", _base("OPTIONS", branch, call_id), length=0)
