"""The one compiled part: the usual RTP packet's send and receive path, in C
(src/imapvm/telephony/rtp/_fastpath.c explains why). Everything else is in pyproject.toml.
No fused multiply-add (-ffp-contract=off): the C RTCP jitter must equal Python's float
arithmetic bit for bit, on every architecture (tests/telephony/test_rtp_fastpath.py)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("imapvm.telephony.rtp._fastpath",
                             ["src/imapvm/telephony/rtp/_fastpath.c"],
                             extra_compile_args=["-O2", "-ffp-contract=off", "-Wall",
                                                 "-Wextra"])])
