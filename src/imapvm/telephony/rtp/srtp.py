"""SRTP (RFC 3711) for one call, keyed by SDES (RFC 4568): libsrtp through ``pylibsrtp``.

One outbound session (our key, every SSRC we send) and one inbound session (the caller's key,
any SSRC it uses). A packet that fails authentication is dropped and counted, never decoded.
"""

from __future__ import annotations

import pylibsrtp

from ..sdp import SrtpKeys

_PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}

SrtpError = pylibsrtp.Error


class SrtpStream:
    def __init__(self, keys: SrtpKeys) -> None:
        profile = _PROFILES[keys.suite]
        self.keys = keys
        self._tx = pylibsrtp.Session(policy=pylibsrtp.Policy(
            key=keys.local_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=profile))
        self._rx = pylibsrtp.Session(policy=pylibsrtp.Policy(
            key=keys.remote_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
            srtp_profile=profile))

    def protect(self, packet: bytes) -> bytes:
        return bytes(self._tx.protect(packet))

    def protect_rtcp(self, packet: bytes) -> bytes:
        return bytes(self._tx.protect_rtcp(packet))

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        return bytes(self._rx.unprotect_rtcp(packet))

    def unprotect(self, packet: bytes) -> bytes:
        """The plain RTP packet; raises SrtpError when it does not authenticate (or replays)."""
        return bytes(self._rx.unprotect(packet))
