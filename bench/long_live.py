#!/usr/bin/env python3
"""A long live session: is WeMaster's memory flat while a lesson goes on for hours?

Driven by `bench/rtmp-hls.sh --long SECONDS` (which prepares the input, the binary, PostgreSQL,
Redis and the user, as for the side-by-side runs). One WeMaster process, N recorded live streams
(`ffmpeg -re -stream_loop -1 -c copy` of the benches' 720p30 2.5 Mbit/s input), each watched by a
viewer that polls its playlist every second and downloads every new segment. Every
`--sample` seconds: the server's RSS and PSS, CPU, open file descriptors, threads and the
segments published so far. At the end the publishers stop and each recording must become
`ready`, as long as the session was.

Reported: RSS at fixed minutes, and the least-squares slope of RSS over time after the warm-up
(KiB per hour and per segment) — a leak that grows with segments shows as a slope, steady
buffers do not. Writes bench/results/long-live-<time>.json and prints a summary.
"""

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtmp_hls as rh  # noqa: E402  (the side-by-side bench's server and client helpers)


class Viewer(rh.Poller):
    """A playlist poller that also downloads every segment the first time it is listed."""

    def __init__(self, host, port, path, interval, stop_event):
        super().__init__(host, port, path, interval, stop_event)
        self.fetched = 0
        self.fetch_errors = 0
        self.bytes = 0
        self._done = set()
        self._conn = None
        self._base = path.rsplit("/", 1)[0]

    def _parse(self, body, now):
        super()._parse(body, now)
        for seq, (_, _, uri) in list(self.seen.items()):
            if seq in self._done:
                continue
            self._done.add(seq)
            self._fetch(uri)

    def _fetch(self, uri):
        path = uri if uri.startswith("/") else f"{self._base}/{uri}"
        try:
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            self._conn.request("GET", path)
            r = self._conn.getresponse()
            body = r.read()
            if r.status == 200:
                self.fetched += 1
                self.bytes += len(body)
            else:
                self.fetch_errors += 1
        except (OSError, http.client.HTTPException):
            self.fetch_errors += 1
            if self._conn is not None:
                self._conn.close()
            self._conn = None


def count_dir(path):
    try:
        return len(os.listdir(path))
    except OSError:
        return None


def sample(server, viewers, t0, ticks0):
    pid = server.proc.pid
    rss, pss = rh.rss_kib([pid])
    return {
        "t_s": round(time.monotonic() - t0, 1),
        "rss_kib": rss,
        "pss_kib": pss,
        "cpu_s": (rh.cpu_ticks([pid]) - ticks0) / rh.CLK_TCK,
        "fds": count_dir(f"/proc/{pid}/fd"),
        "threads": count_dir(f"/proc/{pid}/task"),
        "segments": sum(len(v.seen) for v in viewers),
        "fetched": sum(v.fetched for v in viewers),
    }


def slope(points):
    """Least-squares slope of y over x, or None with fewer than two points."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def wait_ready(server, n, timeout):
    """{stream index: (status, duration_s)} once every recording is ready (or at the timeout)."""
    deadline = time.monotonic() + timeout
    out = {}
    while time.monotonic() < deadline:
        recs = server.recordings()
        out = {i: (r.get("status"), r.get("duration_s") or r.get("duration_ms", 0) / 1000)
               for i, r in recs.items()}
        if len(out) == n and all(s == "ready" for s, _ in out.values()):
            break
        time.sleep(2)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True)
    ap.add_argument("--wemaster-bin", required=True)
    ap.add_argument("--pipelines-dir", required=True)
    ap.add_argument("--email", required=True)
    ap.add_argument("--password", default=os.environ.get("WEMASTER_ADMIN_PASSWORD"))
    ap.add_argument("--seconds", type=float, default=7200)
    ap.add_argument("--streams", type=int, default=2)
    ap.add_argument("--sample", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=600,
                    help="seconds left out of the slope (buffers growing to their steady size)")
    ap.add_argument("--storage", default="local")
    ap.add_argument("--s3s-fs", default="")
    ap.add_argument("--wemaster-ports", default=None)
    ap.add_argument("--results-dir", required=True)
    ap.add_argument("--meta", default="{}")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    workdir = tempfile.mkdtemp(prefix="wm-long-")
    server = rh.Wemaster(args, workdir)
    server.record = True
    server.start()
    server.prepare(args.streams)
    stop = threading.Event()
    samples = []
    pubs, viewers = [], []
    result = {"meta": json.loads(args.meta), "version": server.version(), "streams": args.streams,
              "seconds": args.seconds, "warmup_s": args.warmup, "workdir": workdir}
    try:
        t0 = time.monotonic()
        ticks0 = rh.cpu_ticks([server.proc.pid])
        samples.append(sample(server, viewers, t0, ticks0))
        for i in range(args.streams):
            pubs.append(rh.Publisher(args, server.publish_url(i)))
            v = Viewer(*server.playlist(i), 1.0, stop)
            v.start()
            viewers.append(v)
        next_t = t0 + args.sample
        last_log = t0
        while time.monotonic() - t0 < args.seconds:
            time.sleep(max(0.0, next_t - time.monotonic()))
            next_t += args.sample
            if server.proc.poll() is not None:
                raise RuntimeError(f"wemaster exited ({server.proc.returncode}); see {workdir}/server.log")
            s = sample(server, viewers, t0, ticks0)
            samples.append(s)
            dead = [i for i, p in enumerate(pubs) if p.proc.poll() is not None]
            if dead:
                raise RuntimeError(f"publishers {dead} exited: {pubs[dead[0]].err[-3:]}")
            if time.monotonic() - last_log >= 300:
                last_log = time.monotonic()
                rh.log(f"{s['t_s'] / 60:.0f} min: RSS {s['rss_kib'] / 1024:.1f} MiB, "
                       f"{s['segments']} segments, {s['fds']} fds, {s['threads']} threads")
        for p in pubs:
            p.stop()
        for p in pubs:
            p.proc.wait(30)
        time.sleep(3)
        stop.set()
        # The access token from the start has long expired: log in again.
        server.token = None
        server.token = server._api("POST", "/api/v1/auth/login",
                                   {"email": args.email, "password": args.password})["access_token"]
        recs = wait_ready(server, args.streams, 600)
        result["recordings"] = {str(i): {"status": s, "duration_s": d} for i, (s, d) in recs.items()}
        samples.append(sample(server, viewers, t0, ticks0))
    finally:
        stop.set()
        for p in pubs:
            if p.proc.poll() is None:
                p.proc.kill()
        server.stop()

    steady = [s for s in samples if s["t_s"] >= args.warmup and s["segments"] > 0]
    per_h = slope([(s["t_s"] / 3600, s["rss_kib"]) for s in steady])
    per_seg = slope([(s["segments"], s["rss_kib"]) for s in steady])
    at = {}
    for minute in (1, 5, 10, 30, 60, 90, 120, 180, 240):
        near = [s for s in samples if abs(s["t_s"] - minute * 60) <= args.sample]
        if near:
            at[str(minute)] = round(near[0]["rss_kib"] / 1024, 1)
    last = samples[-1]
    result.update({
        "samples": samples,
        "rss_mib_at_minute": at,
        "rss_slope_kib_per_hour": per_h,
        "rss_slope_kib_per_segment": per_seg,
        "segments": max(s["segments"] for s in samples),
        "segments_fetched": sum(v.fetched for v in viewers),
        "fetch_errors": sum(v.fetch_errors for v in viewers),
        "playlist_errors": sum(v.errors for v in viewers),
        "cpu_pct": 100 * last["cpu_s"] / max(1.0, last["t_s"]),
        "fds_min_max": [min(s["fds"] or 0 for s in steady or samples), max(s["fds"] or 0 for s in steady or samples)],
        "threads_min_max": [min(s["threads"] or 0 for s in steady or samples),
                            max(s["threads"] or 0 for s in steady or samples)],
    })
    os.makedirs(args.results_dir, exist_ok=True)
    path = os.path.join(args.results_dir, time.strftime("long-live-%Y%m%d-%H%M%S.json"))
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"results: {path}")
    print(f"{args.streams} recorded streams for {args.seconds / 60:.0f} min, "
          f"{result['segments']} segments listed, {result['segments_fetched']} downloaded "
          f"({result['fetch_errors']} failed, {result['playlist_errors']} playlist errors)")
    print(f"RSS (MiB) at minute: {at}")
    if per_h is not None:
        print(f"RSS slope after {args.warmup / 60:.0f} min: {per_h:+.1f} KiB/hour, "
              f"{per_seg:+.3f} KiB/segment")
    print(f"CPU: {result['cpu_pct']:.2f} % of a core; fds {result['fds_min_max']}, "
          f"threads {result['threads_min_max']}")
    print(f"recordings: {result.get('recordings')}")
    if not args.keep:
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
