"""Configured MWI peers are resolved to an address of the listening socket's family.

The filter used to be a chained comparison (`":" in a == (":" in b)`), true only by accident
and never filtering; `mypy --strict` found it."""

from __future__ import annotations

import asyncio
import socket

import pytest

from imapvm.telephony.mwi_sink import MwiSink, same_family
from imapvm.telephony.server import SipSettings


def test_same_family() -> None:
    assert same_family("192.0.2.1", "0.0.0.0")
    assert same_family("2001:db8::1", "::")
    assert not same_family("2001:db8::1", "127.0.0.1")
    assert not same_family("192.0.2.1", "::1")


async def test_a_name_with_both_families_resolves_to_the_listeners(
        monkeypatch: pytest.MonkeyPatch) -> None:
    both = [(socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("2001:db8::7", 5070, 0, 0)),
            (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("192.0.2.7", 5070))]

    async def getaddrinfo(host: str, port: int, **_: object) -> list[object]:
        assert host == "phone.example"
        return list(both)

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    target = "sip:100@phone.example:5070"
    for host, expected in (("127.0.0.1", "192.0.2.7"), ("::1", "2001:db8::7")):
        sink = MwiSink(SipSettings(host=host, mwi_unsolicited={"100": (target,)}),
                       core=lambda: None,  # type: ignore[arg-type,return-value]
                       pump=lambda: None, clock=lambda: 0.0)
        await sink.resolve_targets()
        assert sink._resolved[target] == (expected, 5070)
