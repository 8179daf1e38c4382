"""SIP/RTP load: sipp places N concurrent calls; each hears a prompt, then talks for a while.

Run from the repository root:  .venv/bin/python bench/sip_load.py --calls 50 100 200
Measures, per load level, with our server in this process and sipp as the callers:
CPU of this process while all calls are up (the window starts once every call is talking and
ends before the first caller hangs up; a run where a call ended inside it says so), RTP
send-interval lateness p50/p99/max (how late
each 20 ms frame left compared with its schedule), packets lost on receive, and whether every
recording has the length the caller talked for. Last line per level:
``calls=N cpu_pct= send_p99_ms= lost_packets= recordings_complete=``
Goal (issue 18): 500 calls within 60 % of one core, p99 <= 5 ms, nothing lost.
``--profile FILE`` writes a cProfile of the CPU window (pstats format) to FILE.
``--codec g722`` and/or ``--srtp`` (SDES, AES_CM_128_HMAC_SHA1_80; the bench lets SDES travel
over UDP) use Python callers in a separate process (bench/_rtp_callers.py) instead of sipp, which
plays neither; ``--caller python`` uses them for G.711/RTP too, for a like-for-like comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

from imapvm.telephony.channel import SipChannel  # noqa: E402
from imapvm.telephony.server import SipServer, SipSettings  # noqa: E402

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="load call">
  <send retrans="500"><![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [rtpstream_audio_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="200" rtd="true"/>
  <send><![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <pause milliseconds="PROMPT_MS"/>
  <nop><action><exec rtp_stream="AUDIO_FILE,-1,0"/></action></nop>
  <pause milliseconds="TALK_MS"/>
  <nop><action><exec rtp_stream="pause"/></action></nop>
  <send retrans="500"><![CDATA[
      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <recv response="200" crlf="true"/>
</scenario>
"""


def percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_level(
    calls: int, talk: float, prompt: float, work: Path, profile: str | None = None,
    codec: str = "pcmu", srtp: bool = False, caller: str = "sipp",
) -> str:
    channels: list[SipChannel] = []
    recordings: list[int] = []
    answered_at: list[float] = []
    prompt_audio = (3000 * np.sin(2 * np.pi * 440 * np.arange(int(8000 * prompt)) / 8000)).astype(
        np.int16
    )

    async def handler(channel: SipChannel) -> None:
        channels.append(channel)
        await channel.answer()
        answered_at.append(time.monotonic())
        await channel.play(prompt_audio)
        result = await channel.record(max_seconds=talk + 30)
        recordings.append(len(result[0]))  # RecordResult: (audio, reason, ...)

    settings = SipSettings(host="127.0.0.1", port=0, rtp_ports=(36000, 39998), measure_rtp=True,
                           srtp="required" if srtp else "optional", sdes_in_clear=srtp)
    scenario = work / "load.xml"
    audio_file = work / "caller.ul"
    scenario.write_text(
        SCENARIO.replace("PROMPT_MS", str(int(prompt * 1000)))
        .replace("TALK_MS", str(int(talk * 1000)))
        .replace("AUDIO_FILE", str(audio_file))
    )
    rate = max(10, calls // 5)
    async with SipServer(settings, handler) as server:
        host, port = server.address
        if caller == "python":
            sipp = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "bench" / "_rtp_callers.py"), host, str(port),
                str(calls), codec, "1" if srtp else "0", str(prompt), str(talk), str(rate),
                cwd=work, stdout=asyncio.subprocess.DEVNULL,
            )
        else:
            sipp = await asyncio.create_subprocess_exec(
                "sipp", "-sf", str(scenario), "-s", "1234", "-i", "127.0.0.1", "-mi",
                "127.0.0.1", "-p", str(free_udp_port()), "-mp", "50000", "-cp",
                str(free_udp_port()), "-m", str(calls), "-l", str(calls), "-r", str(rate),
                "-nostdin", "-timeout", str(int(talk + prompt + 60)), f"{host}:{port}",
                cwd=work, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )
        # Steady state: every call is up and talking. Measure CPU from then until just
        # before the first caller hangs up (its ACK + prompt + talk), never across hang-ups.
        while len(answered_at) < calls and sipp.returncode is None:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        await asyncio.sleep(prompt + 1)
        first_bye = answered_at[0] + prompt + talk if answered_at else time.monotonic()
        window = first_bye - 1.0 - time.monotonic()
        if window < 2.0:
            raise SystemExit(f"calls came up too slowly for a CPU window: use --talk > {talk}")
        profiler = cProfile.Profile() if profile else None
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        up0 = len(server.channels)
        marks0 = [len(c.rtp.stats.send_errors_ms or []) if c.rtp else 0 for c in channels]
        if profiler:
            profiler.enable()
        await asyncio.sleep(window)
        if profiler:
            profiler.disable()
        r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        up1 = len(server.channels)
        marks1 = [len(c.rtp.stats.send_errors_ms or []) if c.rtp else 0 for c in channels]
        cpu = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / (t1 - t0) * 100
        if profiler and profile:
            profiler.dump_stats(profile)
        print(f"  CPU window {t1 - t0:.1f} s with {up0}..{up1} calls up"
              + ("" if up0 == up1 == calls else "  (NOT all calls up: figure invalid)"))
        await sipp.wait()
        for _ in range(50):
            if len(recordings) >= calls:
                break
            await asyncio.sleep(0.1)
    errors = np.concatenate([
        np.asarray(c.rtp.stats.send_errors_ms or [], dtype=np.float64)
        for c in channels if c.rtp is not None
    ]) if channels else np.zeros(0)
    in_window = np.concatenate([
        np.asarray((c.rtp.stats.send_errors_ms or [])[a:b], dtype=np.float64)
        for c, a, b in zip(channels, marks0, marks1, strict=False) if c.rtp is not None
    ]) if channels else np.zeros(0)
    lost = sum(c.rtp.reorder_stats["lost"] for c in channels if c.rtp is not None)
    minimum = int((talk - 1.0) * 8000)
    complete = sum(1 for n in recordings if n >= minimum)
    print(
        f"  sipp rc={sipp.returncode} answered={len(channels)} send p50="
        f"{percentile(errors, 50):.2f} ms p99={percentile(errors, 99):.2f} ms "
        f"max={errors.max() if len(errors) else float('nan'):.1f} ms packets={len(errors)}"
    )
    print(f"  inside the CPU window: send p50={percentile(in_window, 50):.2f} ms "
          f"p99={percentile(in_window, 99):.2f} ms max={in_window.max():.1f} ms "
          f"packets={len(in_window)}")
    codecs = {c.rtp.codec.encoding for c in channels if c.rtp is not None}
    encrypted = sum(1 for c in channels if c.rtp is not None and c.rtp.srtp is not None)
    return (
        f"calls={calls} codec={'/'.join(sorted(codecs))} srtp_calls={encrypted} "
        f"caller={caller} cpu_pct={cpu:.0f} cpu_pct_per_call={cpu / max(calls, 1):.3f} "
        f"send_p99_ms={percentile(errors, 99):.1f} "
        f"lost_packets={lost} recordings_complete={complete}/{calls}"
    )


def make_audio(speech: Path, raw: Path) -> None:
    subprocess.run(["espeak-ng", "-w", str(speech), "testing one two three " * 4], check=True)
    # sipp 3.6.1 rtp_stream does not skip WAV headers: give it raw u-law.
    subprocess.run(["sox", str(speech), "-r", "8000", "-c", "1", "-t", "ul", str(raw)],
                   check=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--talk", type=float, default=30.0, help="seconds each caller talks")
    parser.add_argument("--prompt", type=float, default=2.0, help="seconds of prompt first")
    parser.add_argument("--profile", help="write a cProfile of the CPU window to this file")
    parser.add_argument("--codec", choices=("pcmu", "g722"), default="pcmu")
    parser.add_argument("--srtp", action="store_true", help="SRTP (SDES) on every call")
    parser.add_argument("--caller", choices=("sipp", "python"), default=None,
                        help="who calls (default: sipp for G.711/RTP, python otherwise)")
    args = parser.parse_args()
    caller = args.caller or ("python" if args.codec != "pcmu" or args.srtp else "sipp")
    if caller == "sipp" and (args.codec != "pcmu" or args.srtp):
        raise SystemExit("sipp plays neither G.722 nor SRTP here: use --caller python")
    if shutil.which("sipp") is None or shutil.which("sox") is None:
        raise SystemExit("needs sipp and sox")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        speech = work / "speech.wav"
        make_audio(speech, work / "caller.ul")
        for calls in args.calls:
            print(await run_level(calls, args.talk, args.prompt, work, args.profile,
                                  args.codec, args.srtp, caller), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
