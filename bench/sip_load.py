"""SIP/RTP load: sipp places N concurrent calls; each hears a prompt, then talks for a while.

Run from the repository root:  .venv/bin/python bench/sip_load.py --calls 50 100 200
Measures, per load level, with our server in this process and sipp as the callers:
CPU of this process while all calls are up (the window starts once every call is answered and
its prompt played, and ends a second before the first caller hangs up; ``cpu_pct=nan`` when a
call was missing, not yet recording or ended inside it), RTP send-interval lateness p50/p99/max
(how late each 20 ms frame left compared with its schedule; ``send_p99_ms`` over the whole
run, ``window_send_p99_ms`` inside the CPU window), packets lost on receive, and whether every
recording has the length the caller talked for (at least talk - 1 s; what a caller says over a
prompt that ends late is not recorded, and the bench says how late it was). Last line per level:
``calls=N ... cpu_pct= cpu_window_s= send_p99_ms= window_send_p99_ms= lost_packets=
finished=F/N recordings_complete=R/N``
Goal (issue 18): 500 calls within 60 % of one core, p99 <= 5 ms, nothing lost.

It never hangs: each level has a deadline (``--deadline``, default ramp-up + prompt + talk +
60 s; sipp's own ``-timeout`` does not end a call that waits for a message that never comes).
Past it, the calls still unfinished are listed by where they stopped (the bench's step and the
SIP dialog state), the callers are killed, the last line counts only what finished by then, and
the exit status is 1 (also when any call did not finish for another reason).
``--sip-loss 0.05`` drops that fraction of SIP datagrams both ways at the server (fault
injection: every retransmission path runs; the figures then mean little).
``--profile FILE`` writes a cProfile of the CPU window (pstats format) to FILE.
``--codec g722`` and/or ``--srtp`` (SDES, AES_CM_128_HMAC_SHA1_80; the bench lets SDES travel
over UDP) use Python callers in a separate process (bench/_rtp_callers.py) instead of sipp, which
plays neither; ``--caller python`` uses them for G.711/RTP too, for a like-for-like comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import faulthandler
import random
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import _common  # sets sys.path
import numpy as np
from tests.support.net import free_port, free_udp_block

from imapvm.telephony.channel import SipChannel
from imapvm.telephony.server import SipServer, SipSettings

ROOT = _common.ROOT

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


RUNNING = ("offered", "answered", "prompt", "recording")


@dataclass
class CallTrace:
    """What the bench saw of one call, to say where an unfinished call stopped."""

    state: str = "offered"  # offered, answered, prompt, recording, recorded, failed: ...
    since: float = field(default_factory=time.monotonic)
    samples: int = 0
    prompt_late: float = 0.0  # seconds the prompt ended after its length (a busy loop)
    heard_before: int = 0  # caller's packets received before the recording began
    heard: int = 0  # caller's packets received in all

    def move(self, state: str) -> None:
        self.state, self.since = state, time.monotonic()


@dataclass
class Level:
    """The figures of one load level, honest when the run did not finish."""

    calls: int
    caller: str
    cpu: float = float("nan")  # nan: no valid window (not every call up throughout)
    window: float = 0.0
    timed_out: bool = False
    traces: dict[str, CallTrace] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def lose_sip(server: SipServer, fraction: float) -> None:
    """Fault injection: drop ``fraction`` of the SIP datagrams the server receives and of
    those it sends, at random (a PBX on a lossy network), so every retransmission path of
    both sides is taken while the calls run."""
    transport = server._transport  # a bench reaching in on purpose
    assert transport is not None
    receive, send = transport._on_datagram, transport.send
    rng = random.Random(1)

    def lossy_receive(data: bytes, source: tuple[str, int]) -> None:
        if rng.random() >= fraction:
            receive(data, source)

    def lossy_send(data: bytes, address: tuple[str, int]) -> None:
        if rng.random() >= fraction:
            send(data, address)

    transport._on_datagram = lossy_receive
    transport.send = lossy_send  # type: ignore[method-assign]


def unfinished_report(level: Level, server: SipServer) -> list[str]:
    """Which calls did not finish, grouped by where they stopped (bench and SIP state)."""
    now = time.monotonic()
    groups: dict[tuple[str, str], list[str]] = {}
    for handle, trace in level.traces.items():
        if trace.state == "recorded":
            continue
        state = server.core.call_state(handle)
        key = (trace.state, state.value if state is not None else "no dialog")
        groups.setdefault(key, []).append(handle)
    lines = []
    missing = level.calls - len(level.traces)
    if missing > 0:
        lines.append(f"  {missing} calls never reached the server (no INVITE handled)")
    for (where, dialog), handles in sorted(groups.items()):
        sample = level.traces[handles[0]]
        channel = server.channels.get(handles[0])
        rtp = channel.rtp if channel is not None else None
        lines.append(
            f"  {len(handles)} calls stopped at '{where}' (SIP dialog: {dialog}), e.g. call "
            f"{handles[0]} there for {now - sample.since:.1f} s"
            + (f", RTP received {rtp.stats.received}" if rtp is not None else "")
        )
    return lines


async def run_level(
    calls: int, talk: float, prompt: float, work: Path, profile: str | None = None,
    codec: str = "pcmu", srtp: bool = False, caller: str = "sipp",
    deadline_s: float | None = None, sip_loss: float = 0.0,
) -> tuple[str, bool]:
    """One load level; returns its key=value line and whether every call finished."""
    channels: list[SipChannel] = []
    recordings: list[int] = []
    answered_at: list[float] = []
    level = Level(calls, caller)
    prompt_audio = (3000 * np.sin(2 * np.pi * 440 * np.arange(int(8000 * prompt)) / 8000)).astype(
        np.int16
    )

    async def handler(channel: SipChannel) -> None:
        trace = level.traces[channel.handle] = CallTrace()
        channels.append(channel)
        try:
            await channel.answer()
            trace.move("answered")
            answered_at.append(time.monotonic())
            trace.move("prompt")
            await channel.play(prompt_audio)
            trace.prompt_late = time.monotonic() - trace.since - prompt
            trace.move("recording")
            trace.heard_before = channel.rtp.stats.received if channel.rtp else 0
            result = await channel.record(max_seconds=talk + 30)
            trace.heard = channel.rtp.stats.received if channel.rtp else 0
        except BaseException as exc:
            trace.move(f"failed: {type(exc).__name__} {exc}"[:80])
            raise
        trace.samples = len(result[0])  # RecordResult: (audio, reason, ...)
        recordings.append(trace.samples)
        trace.move("recorded")

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
    loop = asyncio.get_running_loop()
    deadline_s = deadline_s or calls / rate + prompt + talk + 60
    deadline = loop.time() + deadline_s
    # Last resort if the loop itself is stuck (then no asyncio timeout can fire): every
    # thread's stack on stderr, and the process ends.
    faulthandler.dump_traceback_later(deadline_s + 60, exit=True)
    server = SipServer(settings, handler)
    await server.start()
    host, port = server.address
    if sip_loss:
        lose_sip(server, sip_loss)
    if caller == "python":
        sipp = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "bench" / "_rtp_callers.py"), host, str(port),
            str(calls), codec, "1" if srtp else "0", str(prompt), str(talk), str(rate),
            cwd=work, stdout=asyncio.subprocess.DEVNULL,
            stderr=(work / "callers.err").open("w"),
        )
    else:
        sipp = await asyncio.create_subprocess_exec(
            "sipp", "-sf", str(scenario), "-s", "1234", "-i", "127.0.0.1", "-mi",
            "127.0.0.1", "-p", str(free_port(kind=socket.SOCK_DGRAM)),
            "-mp", str(free_udp_block(4)),  # sipp's media: this port and the next three
            "-cp", str(free_port(kind=socket.SOCK_DGRAM)),
            "-m", str(calls), "-l", str(calls), "-r", str(rate),
            "-nostdin", "-timeout", str(int(deadline_s)), "-trace_err", "-error_file",
            str(work / "sipp.err"), f"{host}:{port}",
            cwd=work, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
    marks0: list[int] = []
    marks1: list[int] = []
    try:
        async with asyncio.timeout_at(deadline):
            await measure_window(level, server, channels, answered_at, sipp, prompt, talk,
                                 profile, marks0, marks1)
            await sipp.wait()
            # The callers are done: wait for the calls the server still has (a call that
            # never reached it will not now).
            while any(t.state in RUNNING for t in level.traces.values()):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    except TimeoutError:
        level.timed_out = True
        print(f"  DEADLINE: {deadline_s:.0f} s passed with calls unfinished; caller process "
              f"{'still running' if sipp.returncode is None else f'rc={sipp.returncode}'}")
    # Counted now: closing the server below hangs up what is left, which then "finishes".
    finished = sum(1 for t in level.traces.values() if t.state == "recorded")
    complete_by_deadline = sum(1 for t in level.traces.values()
                               if t.state == "recorded" and t.samples >= int((talk - 1) * 8000))
    unfinished = unfinished_report(level, server)
    for line in unfinished:
        print(line)
    if sipp.returncode is None:
        sipp.kill()
    await sipp.wait()
    for name in ("sipp.err", "callers.err"):
        err_file = work / name
        if err_file.exists() and err_file.stat().st_size:
            counts = Counter(
                re.sub(r"^[\d\-]+\s+[\d:.]+\s+[\d.]+:\s*", "", line).strip()[:120]
                for line in err_file.read_text(errors="replace").splitlines()
                if line.strip() and not line.startswith("The following events"))
            print(f"  {name}, most frequent lines: "
                  + "; ".join(f"{n}x {text!r}" for text, n in counts.most_common(4)))
    try:
        await asyncio.wait_for(server.close(), 15)
    except TimeoutError:
        print("  server close took over 15 s (abandoned)")
    faulthandler.cancel_dump_traceback_later()

    errors = np.concatenate([
        np.asarray(c.rtp.stats.send_errors_ms or [], dtype=np.float64)
        for c in channels if c.rtp is not None
    ]) if channels else np.zeros(0)
    in_window = np.concatenate([
        np.asarray((c.rtp.stats.send_errors_ms or [])[a:b], dtype=np.float64)
        for c, a, b in zip(channels, marks0, marks1, strict=False) if c.rtp is not None
    ]) if marks1 else np.zeros(0)
    lost = sum(c.rtp.reorder_stats["lost"] for c in channels if c.rtp is not None)
    minimum = int((talk - 1.0) * 8000)
    complete = complete_by_deadline
    short = sorted(n / 8000 for n in recordings if n < minimum)
    print(
        f"  caller rc={sipp.returncode} answered={len(answered_at)}/{calls} send p50="
        f"{percentile(errors, 50):.2f} ms p99={percentile(errors, 99):.2f} ms "
        f"max={errors.max() if len(errors) else float('nan'):.1f} ms packets={len(errors)}"
    )
    print(f"  inside the CPU window: send p50={percentile(in_window, 50):.2f} ms "
          f"p99={percentile(in_window, 99):.2f} ms "
          f"max={in_window.max() if len(in_window) else float('nan'):.1f} ms "
          f"packets={len(in_window)}")
    if short:
        shorts = [t for t in level.traces.values()
                  if t.state == "recorded" and t.samples < minimum]
        late = sorted(t.prompt_late for t in shorts)
        before = sorted(t.heard_before for t in shorts)
        heard = sorted(t.heard - t.heard_before for t in shorts)
        print(f"  {len(short)} recordings shorter than {talk - 1:.0f} s: "
              f"shortest {short[0]:.1f} s, longest of them {short[-1]:.1f} s. Their prompt "
              f"ended late by {late[len(late) // 2]:.1f} s (median), {late[-1]:.1f} s (max); "
              f"caller packets before the recording began: median {before[len(before) // 2]}"
              f", max {before[-1]} (talk over a prompt is not recorded); after: median "
              f"{heard[len(heard) // 2]}, min {heard[0]} of the {int(talk / 0.02)} the "
              "caller should send")
    codecs = {c.rtp.codec.encoding for c in channels if c.rtp is not None}
    encrypted = sum(1 for c in channels if c.rtp is not None and c.rtp.srtp is not None)
    ok = finished == calls and not level.timed_out
    line = (
        f"calls={calls} codec={'/'.join(sorted(codecs)) or '-'} srtp_calls={encrypted} "
        f"caller={caller} cpu_pct={level.cpu:.0f} "
        f"cpu_pct_per_call={level.cpu / max(calls, 1):.3f} cpu_window_s={level.window:.1f} "
        f"send_p99_ms={percentile(errors, 99):.1f} "
        f"window_send_p99_ms={percentile(in_window, 99):.1f} "
        f"lost_packets={lost} finished={finished}/{calls} "
        f"recordings_complete={complete}/{calls}"
    )
    return line, ok


async def measure_window(
    level: Level, server: SipServer, channels: list[SipChannel], answered_at: list[float],
    sipp: asyncio.subprocess.Process, prompt: float, talk: float, profile: str | None,
    marks0: list[int], marks1: list[int],
) -> None:
    """CPU of this process while every call is up and talking: from once the last call was
    answered and its prompt played, to a second before the first caller hangs up (its ACK +
    prompt + talk). Left as nan when a call was missing or ended inside the window."""
    while len(answered_at) < level.calls and sipp.returncode is None:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    if len(answered_at) < level.calls:
        print(f"  caller process ended with {len(answered_at)}/{level.calls} calls answered:"
              " no CPU window")
        return
    await asyncio.sleep(prompt + 1)
    window = min(answered_at) + prompt + talk - 1.0 - time.monotonic()
    if window < 2.0:
        print(f"  calls came up too slowly for a CPU window (use --talk > {talk}): none")
        return
    profiler = cProfile.Profile() if profile else None
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    up0 = len(server.channels)
    marks0[:] = [len(c.rtp.stats.send_errors_ms or []) if c.rtp else 0 for c in channels]
    if profiler:
        profiler.enable()
    await asyncio.sleep(window)
    if profiler:
        profiler.disable()
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    up1 = len(server.channels)
    marks1[:] = [len(c.rtp.stats.send_errors_ms or []) if c.rtp else 0 for c in channels]
    valid = up0 == up1 == level.calls and all(
        t.state == "recording" for t in level.traces.values())
    user = (r1.ru_utime - r0.ru_utime) / (t1 - t0) * 100
    system = (r1.ru_stime - r0.ru_stime) / (t1 - t0) * 100
    print(f"  CPU window {t1 - t0:.1f} s with {up0}..{up1} calls up: user {user:.0f} %, "
          f"kernel {system:.0f} % of a core; {r1.ru_nvcsw - r0.ru_nvcsw} voluntary, "
          f"{r1.ru_nivcsw - r0.ru_nivcsw} involuntary context switches"
          + ("" if valid else "  (NOT all calls up and recording: no CPU figure)"))
    level.window = t1 - t0
    if valid:
        level.cpu = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / (t1 - t0) * 100
    if profiler and profile:
        profiler.dump_stats(profile)


def make_audio(speech: Path, raw: Path) -> None:
    subprocess.run(["espeak-ng", "-w", str(speech), "testing one two three " * 4], check=True)
    # sipp 3.6.1 rtp_stream does not skip WAV headers: give it raw u-law.
    subprocess.run(["sox", str(speech), "-r", "8000", "-c", "1", "-t", "ul", str(raw)],
                   check=True)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--talk", type=float, default=30.0, help="seconds each caller talks")
    parser.add_argument("--prompt", type=float, default=2.0, help="seconds of prompt first")
    parser.add_argument("--profile", help="write a cProfile of the CPU window to this file")
    parser.add_argument("--codec", choices=("pcmu", "g722"), default="pcmu")
    parser.add_argument("--srtp", action="store_true", help="SRTP (SDES) on every call")
    parser.add_argument("--caller", choices=("sipp", "python"), default=None,
                        help="who calls (default: sipp for G.711/RTP, python otherwise)")
    parser.add_argument("--sip-loss", type=float, default=0.0, metavar="FRACTION",
                        help="drop this fraction of SIP datagrams both ways at the server "
                        "(fault injection: retransmissions; figures then mean little)")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds a level may take before the calls still unfinished are "
                        "reported and it ends (default: ramp-up + prompt + talk + 60)")
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
        all_ok = True
        for calls in args.calls:
            line, ok = await run_level(calls, args.talk, args.prompt, work, args.profile,
                                       args.codec, args.srtp, caller, args.deadline,
                                       args.sip_loss)
            all_ok = all_ok and ok
            print(line, flush=True)
    # Whatever the loop's teardown would wait for, it does not get a minute.
    faulthandler.dump_traceback_later(60, exit=True)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
