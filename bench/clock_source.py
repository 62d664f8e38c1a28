"""Raw video whose pictures carry the wall-clock time they were made, for glass-to-glass latency.

    python3 bench/clock_source.py [--size 1280x720] [--fps 30] [--seconds 0] | ffmpeg -f rawvideo ...

Writes yuv420p frames to stdout at the frame rate, paced by the clock. Each frame's luma has two
identical rows of 32 blocks (block = width/32 pixels wide, 1/18 of the height tall) at the top: the
frame's creation time in milliseconds since the epoch, modulo 2^32, most significant bit first,
white = 1, black = 0. The player (bench/latency.mjs) reads both rows from the decoded picture and
keeps a reading only when they agree. The rest of the picture is a grey field with a moving bar
(so the encoder has motion to code, as with a camera).
"""

import argparse
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=0, help="0: until stdout closes")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    block = w // 32
    band = h // 18
    grey = bytes([110]) * w
    chroma = bytes([128]) * (w * h // 2)
    out = sys.stdout.buffer
    start = time.monotonic()
    n = 0
    while args.seconds <= 0 or n < args.seconds * args.fps:
        due = start + n / args.fps
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        stamp = int(time.time() * 1000) & 0xFFFFFFFF
        row = b"".join(
            (b"\xeb" if (stamp >> (31 - i)) & 1 else b"\x10") * block for i in range(32)
        ).ljust(w, b"\x10")
        bar_x = (n * 8) % w
        bar_row = bytearray(grey)
        bar_row[bar_x : bar_x + 40] = b"\xc8" * len(bar_row[bar_x : bar_x + 40])
        bar_row = bytes(bar_row)
        luma = [row] * band + [grey] * (band // 2) + [row] * band + [grey] * (band // 2)
        luma += [bar_row] * (h - len(luma))
        try:
            out.write(b"".join(luma))
            out.write(chroma)
            out.flush()
        except BrokenPipeError:
            return 0
        n += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
