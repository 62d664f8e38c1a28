#!/usr/bin/env python3
"""RTMP -> live HLS, the second harness: real players instead of a timing poller.

Driven by `bench/rtmp-hls.sh --players yes` (which prepares the input, the wemaster binary,
PostgreSQL, Redis and the user, as for the main benchmark). Standard library only, and on
purpose none of bench/rtmp_hls.py's code: this is the check that the main harness's figure is
not an artefact of how it measures (its 50 ms playlist poll, its warm-up, its run order).

What differs from bench/rtmp_hls.py:
  - viewers are real HLS clients: one `ffmpeg -i <playlist> -c copy -f null -` per stream,
    which starts at the live edge, reloads the playlist once per target duration (a player's
    rate, not 20 times a second) and downloads every segment;
  - runs are paired and the order alternates (W N, N W, W N, ...: ABBA over the rounds), and
    each round's ratio is taken within the round, so drift of the machine cancels out;
  - the CPU window starts after a fixed warm-up counted from the first segment every viewer
    has, and the server's CPU is read from /proc at the window's two ends only;
  - a run counts only if every viewer played at least 80 % of the window's media time.

Output: a table per round (CPU % of a core per stream, RSS per stream, media played), the
median ratio over the rounds, and bench/results/rtmp-players-<time>.json.
"""

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def say(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pick_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def tree(pid):
    """pid and its descendants (nginx's workers)."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_s(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / TCK


def rss_mib(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_KIB
        except (OSError, IndexError, ValueError):
            pass
    return total / 1024


def end_process(proc, sig, grace):
    """Send sig, wait grace seconds, then kill."""
    proc.send_signal(sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def log_file(path):
    """A file for a child's output: the child keeps its own descriptor, ours is closed."""
    return open(path, "wb")


def machine_busy_s():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / TCK  # all but idle and iowait


# ---------------------------------------------------------------------------------------------
# The two servers: start, one playlist URL and one publish URL per stream, stop.


class WeMaster:
    name = "wemaster"

    def __init__(self, a, d):
        self.a, self.d = a, d
        self.rtmp, self.http = (int(x) for x in a.wemaster_ports.split(",")) if a.wemaster_ports \
            else (pick_port(), pick_port())
        self.streams = []

    def start(self):
        env = dict(os.environ)
        env.update({
            "WEMASTER__HTTP__LISTEN": f"127.0.0.1:{self.http}",
            "WEMASTER__HTTP__PUBLIC_URL": f"http://127.0.0.1:{self.http}",
            "WEMASTER__RTMP__LISTEN": f"127.0.0.1:{self.rtmp}",
            "WEMASTER__MEDIA__PIPELINES_DIR": self.a.pipelines_dir,
            "WEMASTER__MEDIA__SPOOL_DIR": f"{self.d}/spool",
            "WEMASTER__STORAGE__BACKEND": "local",
            "WEMASTER__STORAGE__LOCAL__ROOT": f"{self.d}/objects",
            # nginx below: 2 s fragments, 12 s playlist — the same live window.
            "WEMASTER__LIVE__SEGMENT_DURATION_S": "2",
            "WEMASTER__LIVE__WINDOW_SEGMENTS": "6",
        })
        env.setdefault("WEMASTER__AUTH__KEYS_DIR", f"{self.d}/keys")
        with log_file(f"{self.d}/server.log") as log:
            self.proc = subprocess.Popen([self.a.wemaster_bin, "serve"], cwd=self.d, env=env,
                                         stdout=log, stderr=subprocess.STDOUT)
        if not (port_open(self.http, 60) and port_open(self.rtmp, 10)):
            raise RuntimeError(f"wemaster did not start: {self.d}/server.log")
        token = self.call("POST", "/api/v1/auth/login",
                          {"email": self.a.email, "password": self.a.password})["access_token"]
        for i in range(self.a.streams):
            s = self.call("POST", "/api/v1/live-streams",
                          {"title": f"players {i}", "visibility": "public", "record": False},
                          token)
            self.streams.append((s["id"], s["stream_key"]))

    def call(self, method, path, body, token=None):
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        req = urllib.request.Request(f"http://127.0.0.1:{self.http}{path}", method=method,
                                     data=json.dumps(body).encode(), headers=headers)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def publish(self, i):
        return f"rtmp://127.0.0.1:{self.rtmp}/live/{self.streams[i][1]}"

    def playlist(self, i):
        return f"http://127.0.0.1:{self.http}/hls/live/{self.streams[i][0]}/index.m3u8"

    def pids(self):
        return [self.proc.pid]

    def stop(self):
        end_process(self.proc, signal.SIGTERM, 20)


NGINX = """load_module {module};
daemon off;
worker_processes auto;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
rtmp {{ server {{ listen 127.0.0.1:{rtmp};
  application live {{ live on; record off;
    hls on; hls_path {d}/hls; hls_fragment 2s; hls_playlist_length 12s; }} }} }}
http {{
  access_log off;
  client_body_temp_path {d}/t1; proxy_temp_path {d}/t2; fastcgi_temp_path {d}/t3;
  uwsgi_temp_path {d}/t4; scgi_temp_path {d}/t5;
  sendfile on;
  types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
  server {{ listen 127.0.0.1:{http};
    location /hls/ {{ alias {d}/hls/; add_header Cache-Control no-cache; }} }} }}
"""


class Nginx:
    name = "nginx"

    def __init__(self, a, d):
        self.a, self.d = a, d
        self.rtmp, self.http = pick_port(), pick_port()

    def start(self):
        os.makedirs(f"{self.d}/hls")
        with open(f"{self.d}/nginx.conf", "w") as f:
            f.write(NGINX.format(module=self.a.nginx_module, d=self.d, rtmp=self.rtmp,
                                 http=self.http))
        with log_file(f"{self.d}/server.log") as log:
            self.proc = subprocess.Popen(["nginx", "-p", self.d, "-c", f"{self.d}/nginx.conf"],
                                         stdout=log, stderr=subprocess.STDOUT)
        if not (port_open(self.rtmp, 15) and port_open(self.http, 5)):
            raise RuntimeError(f"nginx did not start: {self.d}/error.log")

    def publish(self, i):
        return f"rtmp://127.0.0.1:{self.rtmp}/live/s{i}"

    def playlist(self, i):
        return f"http://127.0.0.1:{self.http}/hls/s{i}.m3u8"

    def pids(self):
        return tree(self.proc.pid)

    def stop(self):
        end_process(self.proc, signal.SIGQUIT, 15)  # nginx's graceful stop


# ---------------------------------------------------------------------------------------------
# Publishers and players.


def publisher(a, url, d, i):
    with log_file(f"{d}/pub{i}.log") as err:
        return subprocess.Popen(
            ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop",
             "-1", "-i", a.input, "-c", "copy", "-f", "flv", url],
            stdout=subprocess.DEVNULL, stderr=err)


class Player:
    """ffmpeg's HLS demuxer as the viewer; its -progress file says how much media it played."""

    def __init__(self, url, d, i):
        self.progress = f"{d}/play{i}.progress"
        with log_file(f"{d}/play{i}.log") as err:
            self.proc = subprocess.Popen(
                ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
                 "-progress", self.progress, "-stats_period", "1",
                 "-i", url, "-c", "copy", "-f", "null", "-"],
                stdout=subprocess.DEVNULL, stderr=err)

    def played_s(self):
        """Media time played so far (the last out_time_us ffmpeg reported), or 0."""
        try:
            with open(self.progress) as f:
                text = f.read()
        except OSError:
            return 0.0
        m = re.findall(r"^out_time_us=(\d+)$", text, re.M)
        return int(m[-1]) / 1e6 if m else 0.0

    def stop(self):
        end_process(self.proc, signal.SIGINT, 5)  # ffmpeg ends cleanly on SIGINT


def wait_playlists(server, n, timeout):
    """Until every stream's playlist lists a segment (players start at the live edge)."""
    end = time.monotonic() + timeout
    pending = set(range(n))
    while pending and time.monotonic() < end:
        for i in list(pending):
            try:
                with urllib.request.urlopen(server.playlist(i), timeout=2) as r:
                    if b"#EXTINF" in r.read():
                        pending.discard(i)
            except OSError:
                pass
        time.sleep(0.5)
    return not pending


def run(a, kind, rnd):
    d = tempfile.mkdtemp(prefix=f"players-{kind.name}-", dir=a.workdir)
    server = kind(a, d)
    server.start()
    pubs, players = [], []
    try:
        idle_rss = rss_mib(server.pids())
        pubs = [publisher(a, server.publish(i), d, i) for i in range(a.streams)]
        if not wait_playlists(server, a.streams, 30):
            raise RuntimeError(f"{server.name}: not every playlist had a segment within 30 s")
        players = [Player(server.playlist(i), d, i) for i in range(a.streams)]
        time.sleep(a.warmup)
        pids = server.pids()
        played0 = [p.played_s() for p in players]
        c0, m0, t0 = cpu_s(pids), machine_busy_s(), time.monotonic()
        time.sleep(a.window)
        pids = server.pids()
        c1, m1, t1 = cpu_s(pids), machine_busy_s(), time.monotonic()
        played = [p.played_s() - s for p, s in zip(players, played0)]
        rss = rss_mib(pids)
        wall = t1 - t0
        cpu = (c1 - c0) / wall * 100
        out = {
            "server": server.name, "round": rnd, "streams": a.streams, "window_s": wall,
            "cpu_pct": cpu, "cpu_pct_per_stream": cpu / a.streams,
            "rss_mib": rss, "rss_idle_mib": idle_rss,
            "rss_mib_per_stream": (rss - idle_rss) / a.streams,
            "other_load_cores": ((m1 - m0) - (c1 - c0)) / wall,
            "played_min_s": min(played), "played_median_s": statistics.median(played),
        }
        out["valid"] = out["played_min_s"] >= 0.8 * wall
        say(f"round {rnd} {server.name}: {cpu / a.streams:.3f} % of a core per stream, "
            f"RSS {rss:.1f} MiB ({out['rss_mib_per_stream']:.2f}/stream), played "
            f"{out['played_min_s']:.1f}-{max(played):.1f} s of {wall:.1f}, other load "
            f"{out['other_load_cores']:.2f} cores{'' if out['valid'] else '  (INVALID: a player stalled)'}")
        return out
    finally:
        for p in players:
            p.stop()
        for p in pubs:
            p.terminate()
        for p in pubs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        server.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", required=True)
    ap.add_argument("--wemaster-bin", required=True)
    ap.add_argument("--pipelines-dir", required=True)
    ap.add_argument("--nginx-module", required=True)
    ap.add_argument("--email", required=True)
    ap.add_argument("--password", default=os.environ.get("WEMASTER_ADMIN_PASSWORD"))
    ap.add_argument("--wemaster-ports", default="", help="RTMP,HTTP (default: free ones)")
    ap.add_argument("--streams", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=4, help="pairs of runs, order alternating")
    ap.add_argument("--warmup", type=float, default=20, help="seconds after players start")
    ap.add_argument("--window", type=float, default=60, help="seconds of CPU measured")
    ap.add_argument("--results-dir", required=True)
    ap.add_argument("--meta", default="{}")
    a = ap.parse_args()
    if not a.password:
        sys.exit("no password (WEMASTER_ADMIN_PASSWORD)")
    a.workdir = tempfile.mkdtemp(prefix="rtmp-players-")
    say(f"{a.streams} streams, {a.rounds} rounds, warm-up {a.warmup} s, window {a.window} s")
    runs = []
    for rnd in range(1, a.rounds + 1):
        order = (WeMaster, Nginx) if rnd % 2 else (Nginx, WeMaster)
        pair = {k.name: run(a, k, rnd) for k in order}
        runs.extend(pair.values())
    ratios = []
    print("\n| round | order | WeMaster CPU/stream | nginx CPU/stream | ratio | RSS/stream W / N "
          "| media played (min) W / N | other load |")
    print("|---:|---|---:|---:|---:|---|---|---|")
    for rnd in range(1, a.rounds + 1):
        w = next(r for r in runs if r["round"] == rnd and r["server"] == "wemaster")
        n = next(r for r in runs if r["round"] == rnd and r["server"] == "nginx")
        ok = w["valid"] and n["valid"]
        ratio = w["cpu_pct_per_stream"] / n["cpu_pct_per_stream"]
        if ok:
            ratios.append(ratio)
        print(f"| {rnd} | {'W, N' if rnd % 2 else 'N, W'} | {w['cpu_pct_per_stream']:.3f} % "
              f"| {n['cpu_pct_per_stream']:.3f} % | {ratio:.2f}{'' if ok else ' (invalid)'} "
              f"| {w['rss_mib_per_stream']:.2f} / {n['rss_mib_per_stream']:.2f} MiB "
              f"| {w['played_min_s']:.0f} / {n['played_min_s']:.0f} s "
              f"| {w['other_load_cores']:.2f} / {n['other_load_cores']:.2f} |")
    median = statistics.median(ratios) if ratios else None
    print(f"\nmedian ratio WeMaster / nginx over {len(ratios)} valid rounds: "
          + (f"{median:.2f}×" if median is not None else "none"))
    os.makedirs(a.results_dir, exist_ok=True)
    path = f"{a.results_dir}/rtmp-players-{time.strftime('%Y%m%d-%H%M%S')}.json"
    with open(path, "w") as f:
        json.dump({"meta": json.loads(a.meta), "args": {k: v for k, v in vars(a).items()
                                                        if k != "password"},
                   "runs": runs, "ratios": ratios, "median_ratio": median}, f, indent=1)
    say(f"results: {path}")
    return 0 if ratios else 1


if __name__ == "__main__":
    sys.exit(main())
