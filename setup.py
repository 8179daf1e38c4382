"""The one compiled part: the usual RTP packet's send and receive path, in C
(src/imapvm/telephony/rtp/_fastpath.c explains why). Everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("imapvm.telephony.rtp._fastpath",
                             ["src/imapvm/telephony/rtp/_fastpath.c"],
                             extra_compile_args=["-O2", "-Wall", "-Wextra"])])
