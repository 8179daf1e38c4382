"""Types of the C module ``_fastpath.c`` (the usual RTP packet's send and receive path)."""

RunState = tuple[int, int, float, float | None]
Datagram = tuple[bytes, float, tuple[str | int, ...]]

def read_run(
    fd: int, limit: int, host: bytes, audio_pt: int, ssrc: int, next_seq: int, next_ts: int,
    rtcp: tuple[int, int, float, float | None, int] | None, to_loop: float, loop_now: float,
    /,
) -> tuple[bytes, int, int, int, RunState | None, list[Datagram], int, int]: ...
def send_rtp(
    fd: int, host: bytes, port: int, second_byte: int, seq: int, ts: int, ssrc: int,
    payload: bytes, /,
) -> int: ...
