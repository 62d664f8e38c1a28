#!/usr/bin/env python3
"""WHIP -> live HLS benchmark runner: CPU per WHIP stream and time from POST to first segment,
with RTMP on the same server, same content, same machine as the reference.

Driven by bench/whip-hls.sh, which prepares the inputs (the RTMP bench's 720p30 2.5 Mbps H.264 +
AAC FLV, and the same H.264 with the audio as Opus in MPEG-TS for WebRTC), the wemaster binary,
PostgreSQL, Redis, a user and a venv with aiortc. Reuses bench/rtmp_hls.py's server, poller and
/proc helpers.

One *run* = one protocol, N publishers, D seconds, a fresh wemaster:
  whip: N `bench/whip_publish.py` (aiortc, the file's H.264 and Opus packets sent as they are);
  rtmp: N `ffmpeg -re -stream_loop -1 -i input.flv -c copy -f flv` (the RTMP bench's publisher);
  chromium (N = 1 only): headless Chromium through tests/whip/chromium.py, H.264 720p30 from its
  fake camera (other content: its time to first segment shows what a browser, which answers
  keyframe requests, gets; aiortc passing a file through cannot make a keyframe on request);
  chromium-vp8 (N = 1 only): the same in VP8, so the server's CPU includes the VP8 -> H.264
  transcode of a 720p stream.
CPU = utime+stime of the wemaster process over the steady window (after --skip), per stream.
For WHIP, time to first segment = the first segment's appearance in the playlist (polled every
--poll-ms) minus the moment just before the POST (CLOCK_MONOTONIC in both processes); also
POST -> 201 and POST -> ICE/DTLS connected (aiortc's view).
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtmp_hls  # noqa: E402
from rtmp_hls import (  # noqa: E402
    CLK_TCK,
    NCPU,
    Poller,
    Publisher,
    Wemaster,
    cpu_ticks,
    log,
    percentile,
    system_busy_ticks,
    wait_quiet,
)


class WhipPublisher:
    """One aiortc publisher process; its JSON events."""

    def __init__(self, args, url, key):
        self.events = {}
        self.proc = subprocess.Popen(
            [args.python, os.path.join(os.path.dirname(__file__), "whip_publish.py"),
             "--url", url, "--key", key, "--input", args.whip_input],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.err = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            self.events.setdefault(e.get("event"), e)

    def _read_err(self):
        for line in self.proc.stderr:
            if len(self.err) < 50:
                self.err.append(line.rstrip())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.proc


class ChromiumPublisher(WhipPublisher):
    """Headless Chromium (fake camera, H.264 720p30 asked) through tests/whip/chromium.py; its
    steps mapped onto WhipPublisher's events (the POST time comes from the page's clock)."""

    def __init__(self, args, url, key, seconds, codec="h264"):
        self.events = {}
        script = os.path.join(os.path.dirname(__file__), "..", "tests", "whip", "chromium.py")
        self.proc = subprocess.Popen(
            [args.python, script, "--url", url, "--key", key, "--codec", "h264",
             "--seconds", str(seconds + 30)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.err = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("step") == "answer" and "t_post" in e:
                t0 = e["t_post"]
                self.events["posted"] = {"t": t0}
                self.events["answer"] = {"t": t0 + e.get("postMs", 0) / 1000}
                if e.get("state") == "connected":
                    self.events["connected"] = {"t": t0 + e.get("connectedMs", 0) / 1000}


def run_one(args, proto, n, rep):
    workdir = tempfile.mkdtemp(prefix=f"wm-bench-whip-{proto}-", dir=args.tmp)
    # A free UDP port for WHIP media (others may run the same benchmark or tests).
    os.environ["WEMASTER__WHIP__UDP_LISTEN"] = f"127.0.0.1:{rtmp_hls.free_port()}"
    server = Wemaster(args, workdir)
    quiet = wait_quiet(args) if args.quiet_wait > 0 else {"quiet": None}
    log(f"run: {proto} N={n} rep={rep} D={args.duration}s (dir {workdir})")
    pubs, pollers = [], []
    stop_polling = threading.Event()
    result = {"protocol": proto, "n": n, "rep": rep, "duration_s": args.duration,
              "skip_s": args.skip, **quiet}
    try:
        server.start()
        server.prepare(n)
        time.sleep(2.0)
        t_start = time.monotonic()
        for i in range(n):
            host, port, path = server.playlist(i)
            p = Poller(host, port, path, args.poll_ms / 1000.0, stop_polling)
            p.start()
            pollers.append(p)
        for i in range(n):
            if proto != "rtmp":
                sid, key = server.streams[i]
                url = f"http://127.0.0.1:{server.http_port}/whip/{sid}"
                pubs.append(WhipPublisher(args, url, key) if proto == "whip"
                            else ChromiumPublisher(args, url, key, args.duration,
                                                   "vp8" if proto == "chromium-vp8" else "h264"))
            else:
                pubs.append(Publisher(args, server.publish_url(i)))
        samples = []
        t_end = t_start + args.duration
        while True:
            now = time.monotonic()
            spids = server.pids()
            if not spids:
                raise RuntimeError(f"wemaster died during the run; see {workdir}")
            busy, total = system_busy_ticks()
            samples.append((now - t_start, cpu_ticks(spids),
                            cpu_ticks([p.proc.pid for p in pubs if p.proc.poll() is None]),
                            busy, total))
            if now >= t_end:
                break
            time.sleep(min(1.0, max(0.0, t_end - now)))
        stop_polling.set()
        for p in pollers:
            p.join(5)
        first = next(s for s in samples if s[0] >= args.skip)
        last = samples[-1]
        wall = last[0] - first[0]
        srv = (last[1] - first[1]) / CLK_TCK / wall
        pub = (last[2] - first[2]) / CLK_TCK / wall
        machine = (last[3] - first[3]) / max(1, last[4] - first[4]) * NCPU
        dead = [i for i, p in enumerate(pubs) if p.proc.poll() is not None]
        result.update({
            "steady_window_s": round(wall, 2),
            "server_cpu_cores": round(srv, 4),
            "cpu_per_stream_pct": round(100 * srv / n, 3),
            "publishers_cpu_cores": round(pub, 4),
            "machine_cpu_cores": round(machine, 4),
            "other_cpu_cores": round(machine - srv - pub, 4),
            "publishers_died": len(dead),
            "publisher_errors": [pubs[i].err[-3:] for i in dead][:3],
            "segments": [len(p.seen) for p in pollers],
            "segment_duration_median_s": percentile(
                [d for p in pollers for (_, d, _) in p.seen.values()], 50),
        })
        if proto != "rtmp":
            to_first, to_answer, to_connected = [], [], []
            for pub_, pol in zip(pubs, pollers):
                posted = pub_.events.get("posted")
                if not posted:
                    continue
                t0 = posted["t"]
                if "answer" in pub_.events:
                    to_answer.append(pub_.events["answer"]["t"] - t0)
                if "connected" in pub_.events:
                    to_connected.append(pub_.events["connected"]["t"] - t0)
                if pol.seen:
                    to_first.append(pol.seen[min(pol.seen)][0] - t0)
            result.update({
                "post_to_answer_s": to_answer,
                "post_to_connected_s": to_connected,
                "post_to_first_segment_s": to_first,
            })
    finally:
        stop_polling.set()
        for p in pubs:
            pr = p.stop()
            try:
                pr.wait(10)
            except subprocess.TimeoutExpired:
                pr.kill()
                pr.wait()
        server.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        os.environ.pop("WEMASTER__WHIP__UDP_LISTEN", None)
    first_seg = result.get("post_to_first_segment_s")
    log(f"  cpu/stream {result.get('cpu_per_stream_pct', float('nan')):.2f}% of a core, "
        f"publishers {result.get('publishers_cpu_cores', 0):.2f} cores, "
        f"other load {result.get('other_cpu_cores', 0):.2f} cores"
        + (f", POST -> first segment {statistics.median(first_seg):.2f} s" if first_seg else ""))
    return result


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def summarize(runs):
    rows = []
    for proto in ("whip", "chromium", "chromium-vp8", "rtmp"):
        for n in sorted({r["n"] for r in runs if r["protocol"] == proto}):
            rs = [r for r in runs if r["protocol"] == proto and r["n"] == n]
            row = {"protocol": proto, "n": n, "runs": len(rs),
                   "cpu_per_stream_pct_median": med([r["cpu_per_stream_pct"] for r in rs]),
                   "cpu_per_stream_pct_all": [r["cpu_per_stream_pct"] for r in rs],
                   "other_cpu_cores_median": med([r["other_cpu_cores"] for r in rs]),
                   "publishers_died": sum(r["publishers_died"] for r in rs)}
            if proto != "rtmp":
                for k in ("post_to_answer_s", "post_to_connected_s", "post_to_first_segment_s"):
                    row[k[:-2] + "_median_s"] = med([x for r in rs for x in r.get(k, [])])
                    row[k[:-2] + "_max_s"] = max(
                        (x for r in rs for x in r.get(k, [])), default=None)
            rows.append(row)
    for row in rows:
        ref = next((r for r in rows if r["protocol"] == "rtmp" and r["n"] == row["n"]), None)
        if row["protocol"] != "rtmp" and ref and ref["cpu_per_stream_pct_median"]:
            row["cpu_vs_rtmp"] = round(
                row["cpu_per_stream_pct_median"] / ref["cpu_per_stream_pct_median"], 2)
    return rows


def print_table(rows):
    print("\n| protocol | N | runs | CPU per stream (% of a core), median | all runs | vs RTMP "
          "| POST -> 201 | POST -> connected | POST -> first segment (median / max) |")
    print("|---|---|---|---|---|---|---|---|---|")
    f = lambda v, fmt="{:.2f}": "–" if v is None else fmt.format(v)  # noqa: E731
    for r in rows:
        print(f"| {r['protocol']} | {r['n']} | {r['runs']} | {f(r['cpu_per_stream_pct_median'])} "
              f"| {', '.join(f(x) for x in r['cpu_per_stream_pct_all'])} "
              f"| {f(r.get('cpu_vs_rtmp'))} "
              f"| {f(r.get('post_to_answer_median_s'), '{:.3f} s')} "
              f"| {f(r.get('post_to_connected_median_s'), '{:.3f} s')} "
              f"| {f(r.get('post_to_first_segment_median_s'), '{:.2f} s')} / "
              f"{f(r.get('post_to_first_segment_max_s'), '{:.2f} s')} |")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True, help="the RTMP bench's FLV (RTMP publishers)")
    p.add_argument("--whip-input", required=True, help="the same H.264 + Opus, MPEG-TS")
    p.add_argument("--python", required=True, help="a python with aiortc")
    p.add_argument("--wemaster-bin", required=True)
    p.add_argument("--pipelines-dir", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--streams", default="1 4")
    p.add_argument("--protocols", default="whip rtmp")
    p.add_argument("--duration", type=int, default=40)
    p.add_argument("--skip", type=int, default=10)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--poll-ms", type=int, default=50)
    p.add_argument("--quiet-wait", type=int, default=300)
    p.add_argument("--quiet-busy", type=float, default=0.35)
    p.add_argument("--results-dir", required=True)
    p.add_argument("--meta", default="{}")
    p.add_argument("--tmp", default=None)
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    args.storage = "local"
    args.s3s_fs = None
    args.password = os.environ["WEMASTER_ADMIN_PASSWORD"]
    os.makedirs(args.results_dir, exist_ok=True)
    out = os.path.join(args.results_dir, f"whip-hls-{time.strftime('%Y%m%d-%H%M%S')}.json")
    doc = {"meta": json.loads(args.meta), "args": {k: v for k, v in vars(args).items()
                                                   if k != "password"}, "runs": []}
    for rep in range(1, args.runs + 1):
        # Interleave protocols and sizes so drift in the machine's load hits all of them.
        for n in [int(x) for x in args.streams.split()]:
            for proto in args.protocols.split():
                if proto.startswith("chromium") and n > 1:
                    continue  # one browser is what 2 cores can encode in real time
                try:
                    doc["runs"].append(run_one(args, proto, n, rep))
                except Exception as e:  # noqa: BLE001
                    log(f"  run failed: {e}")
                    doc["runs"].append({"protocol": proto, "n": n, "rep": rep, "error": str(e)})
                doc["summary"] = summarize([r for r in doc["runs"] if "error" not in r])
                with open(out, "w") as f:
                    json.dump(doc, f, indent=1)
    print_table(doc["summary"])
    log(f"results: {out}")


if __name__ == "__main__":
    main()
