#!/usr/bin/env python3
"""One run of bench/cluster.sh: N `wemaster serve` nodes behind HAProxy, a lesson's load through it.

  1. start N nodes (one database, one Redis, one object store, one signing key, a spool each)
     and HAProxy in front (HTTP round robin with /readyz checks, RTMP in TCP mode, leastconn);
  2. the teacher creates `--publishers` live streams through the balancer and as many
     `ffmpeg -re -stream_loop -1 -c copy` publishers push to the balancer's RTMP port;
  3. `--viewers` HLS viewers per stream poll its playlist through the balancer (every second)
     and fetch each new segment: with N > 1, two requests in three reach a node that does not
     hold the stream and are forwarded to the one that does;
  4. chat-load opens `--chat` WebSocket connections through the balancer (a room of
     `--room-size` listeners fed at `--rate` messages/s, the rest idle) and, over its idle and
     publishing windows, reads the CPU of every node and of HAProxy (--watch-pids).

Prints one JSON object (also written to --out): per node its pid, the streams it held, CPU
(% of one core) in chat-load's idle window (media + HLS + idle sockets) and publishing window
(the same + the room's messages), RSS; HAProxy's; chat latency and loss; HLS requests, errors
and latency percentiles.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request


def wait_http(url, secs):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def api(base, method, path, body=None, token=None):
    req = urllib.request.Request(
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"content-type": "application/json",
                 **({"authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


class Viewer(threading.Thread):
    """Polls a live playlist each second and fetches each segment once, like hls.js would."""

    def __init__(self, url, stop):
        super().__init__(daemon=True)
        self.url, self.stop = url, stop
        self.playlist_ms, self.segment_ms = [], []
        self.errors = 0
        self.bytes = 0
        self.seen = set()

    def get(self, url):
        t = time.monotonic()
        with urllib.request.urlopen(url, timeout=5) as r:
            body = r.read()
        return body, (time.monotonic() - t) * 1000

    def run(self):
        base = self.url.rsplit("/", 1)[0] + "/"
        while not self.stop.is_set():
            try:
                body, ms = self.get(self.url)
                self.playlist_ms.append(ms)
                names = [l for l in body.decode().splitlines() if l and not l.startswith("#")]
                for name in names[-2:]:
                    if name in self.seen:
                        continue
                    self.seen.add(name)
                    seg, ms = self.get(name if "://" in name else base + name)
                    self.segment_ms.append(ms)
                    self.bytes += len(seg)
            except (OSError, urllib.error.HTTPError):
                self.errors += 1
            self.stop.wait(1.0)


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, int(len(v) * p / 100))], 1)


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--chat-load", required=True)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--publishers", type=int, default=20)
    ap.add_argument("--viewers", type=int, default=2, help="HLS viewers per stream")
    ap.add_argument("--chat", type=int, default=2000)
    ap.add_argument("--room-size", type=int, default=1000)
    ap.add_argument("--other-rooms", type=int, default=20)
    ap.add_argument("--rate", type=float, default=10)
    ap.add_argument("--students", type=int, default=50)
    ap.add_argument("--duration", type=int, default=60)
    ap.add_argument("--idle", type=int, default=15)
    ap.add_argument("--input", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--port", type=int, default=18600, help="the balancer's HTTP port; nodes +1..")
    ap.add_argument("--rtmp-port", type=int, default=11960)
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    password = os.environ["BENCH_PASSWORD"]
    os.makedirs(a.work, exist_ok=True)
    procs, stop = [], threading.Event()

    def cleanup():
        stop.set()
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()

    try:
        nodes = []
        for i in range(a.nodes):
            http, rtmp = a.port + 1 + i, a.rtmp_port + 1 + i
            env = dict(os.environ,
                       WEMASTER__HTTP__LISTEN=f"127.0.0.1:{http}",
                       WEMASTER__HTTP__PUBLIC_URL=f"http://127.0.0.1:{a.port}",
                       WEMASTER__HTTP__TRUSTED_PROXIES="127.0.0.1/32",
                       WEMASTER__RTMP__LISTEN=f"127.0.0.1:{rtmp}",
                       WEMASTER__WHIP__UDP_LISTEN="127.0.0.1:0",
                       WEMASTER__STORAGE__LOCAL__ROOT=f"{a.work}/objects",
                       WEMASTER__MEDIA__SPOOL_DIR=f"{a.work}/spool-{i}",
                       WEMASTER__CHAT__MAX_CONNECTIONS_PER_USER=str(a.chat // a.students + 10),
                       WEMASTER__CHAT__MESSAGES_PER_10S=str(int(a.rate) * 20 + 100),
                       WEMASTER__DATABASE__MAX_CONNECTIONS="16",
                       RUST_LOG="warn")
            log = open(f"{a.work}/node-{i}.log", "w")
            p = subprocess.Popen([a.bin, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
            procs.append(p)
            nodes.append({"pid": p.pid, "http": http, "rtmp": rtmp})
            # One at a time: the first makes the signing key the others then read.
            if not wait_http(f"http://127.0.0.1:{http}/readyz", 60):
                raise SystemExit(f"node on {http} not ready (see {a.work})")
        cfg = [
            # Each proxied connection holds two sockets; within the open-file limit cluster.sh sets.
            f"global\n  maxconn {a.chat + 1000}\n",
            "defaults\n  timeout connect 1s\n  timeout client 60s\n  timeout server 60s\n"
            "  timeout tunnel 1h\n  retries 3\n  option redispatch\n",
            f"frontend http\n  mode http\n  bind 127.0.0.1:{a.port}\n  default_backend nodes\n",
            "backend nodes\n  mode http\n  balance roundrobin\n  option forwardfor\n"
            "  option httpchk GET /readyz\n  retry-on conn-failure empty-response\n",
            *[f"  server n{i} 127.0.0.1:{n['http']} check inter 1s\n" for i, n in enumerate(nodes)],
            f"frontend rtmp\n  mode tcp\n  bind 127.0.0.1:{a.rtmp_port}\n  default_backend rtmp\n",
            "backend rtmp\n  mode tcp\n  balance leastconn\n",
            *[f"  server r{i} 127.0.0.1:{n['rtmp']} check inter 1s\n" for i, n in enumerate(nodes)],
        ]
        with open(f"{a.work}/haproxy.cfg", "w") as f:
            f.write("".join(cfg))
        hap = subprocess.Popen(["haproxy", "-f", f"{a.work}/haproxy.cfg"],
                               stdout=open(f"{a.work}/haproxy.log", "w"), stderr=subprocess.STDOUT)
        procs.append(hap)
        base = f"http://127.0.0.1:{a.port}"
        if not wait_http(base + "/readyz", 20):
            raise SystemExit("haproxy not ready")

        token = api(base, "POST", "/api/v1/auth/login",
                    {"email": a.teacher, "password": password})["access_token"]
        streams = [api(base, "POST", "/api/v1/live-streams",
                       {"title": f"cluster bench {i}", "visibility": "public",
                        "record": a.record}, token) for i in range(a.publishers)]
        for s in streams:
            procs.append(subprocess.Popen(
                ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
                 "-stream_loop", "-1", "-i", a.input, "-c", "copy", "-f", "flv",
                 f"rtmp://127.0.0.1:{a.rtmp_port}/live/{s['stream_key']}"],
                stdout=subprocess.DEVNULL, stderr=open(f"{a.work}/ffmpeg.log", "a")))
        # Live when a playlist with two segments answers through the balancer.
        deadline = time.monotonic() + 60
        pending = {s["id"] for s in streams}
        while pending and time.monotonic() < deadline:
            for sid in list(pending):
                try:
                    with urllib.request.urlopen(f"{base}/hls/live/{sid}/index.m3u8", timeout=2) as r:
                        if r.read().count(b"#EXTINF") >= 2:
                            pending.discard(sid)
                except OSError:
                    pass
            time.sleep(0.5)
        if pending:
            raise SystemExit(f"{len(pending)} streams never live (see {a.work})")
        viewers = [Viewer(f"{base}/hls/live/{s['id']}/index.m3u8", stop)
                   for s in streams for _ in range(a.viewers)]
        for v in viewers:
            v.start()
        time.sleep(5)

        cpu0 = {p: proc_cpu(p) for p in [n["pid"] for n in nodes] + [hap.pid]}
        t0 = time.monotonic()
        pids = [n["pid"] for n in nodes] + [hap.pid]
        chat_out = f"{a.work}/chat.json"
        subprocess.run(
            [a.chat_load, "--url", base, "--teacher-email", a.teacher,
             "--students", str(a.students), "--connections", str(a.chat),
             "--room-size", str(a.room_size), "--other-rooms", str(a.other_rooms),
             "--rate", str(a.rate), "--duration-s", str(a.duration), "--idle-s", str(a.idle),
             "--watch-pids", ",".join(map(str, pids)), "--out", chat_out],
            check=True, stdout=subprocess.DEVNULL)
        whole_s = time.monotonic() - t0
        cpu1 = {p: proc_cpu(p) for p in cpu0}
        chat = json.load(open(chat_out))
        # Which node held each stream: the database says (live_streams.node_id → the node's
        # internal URL, which names its port).
        held = subprocess.run(
            ["psql", os.environ["DATABASE_URL"], "-tAc",
             "SELECT n.internal_url, count(*) FROM live_streams s JOIN cluster_nodes n ON n.id = s.node_id "
             f"WHERE s.status = 'active' AND s.id IN ({','.join(repr(s['id']) for s in streams)}) "
             "GROUP BY 1"], capture_output=True, text=True, check=True).stdout
        by_port = {int(l.split("|")[0].rsplit(":", 1)[1]): int(l.split("|")[1])
                   for l in held.splitlines() if l.strip()}
        # The forwarding hop as the forwarding nodes timed it (src/http/hls.rs).
        forward = {}
        for n in nodes:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{n['http']}/metrics", timeout=5) as r:
                    lines = r.read().decode().splitlines()
                forward[n["pid"]] = [l for l in lines if l.startswith("hls_forward")]
            except OSError:
                pass
        stop.set()
        for v in viewers:
            v.join(timeout=6)
        w = {x["pid"]: x for x in chat["watched"]}
        out = {
            "nodes": [{"pid": n["pid"], "streams": by_port.get(n["http"], 0),
                       "cpu_idle_pct": w[n["pid"]]["cpu_idle_pct"],
                       "cpu_publish_pct": w[n["pid"]]["cpu_publish_pct"],
                       "cpu_whole_pct": 100 * (cpu1[n["pid"]] - cpu0[n["pid"]]) / whole_s,
                       "rss_mib": w[n["pid"]]["rss_end_mib"]} for n in nodes],
            "haproxy": {"cpu_idle_pct": w[hap.pid]["cpu_idle_pct"],
                        "cpu_publish_pct": w[hap.pid]["cpu_publish_pct"],
                        "rss_mib": w[hap.pid]["rss_end_mib"]},
            "chat": {k: chat[k] for k in ("connections", "failed", "open_s", "acked", "deliveries",
                                          "expected_deliveries", "lost", "duplicated",
                                          "out_of_order", "closed_early", "latency_ms")},
            "hls": {"viewers": len(viewers),
                    "playlist_gets": sum(len(v.playlist_ms) for v in viewers),
                    "segment_gets": sum(len(v.segment_ms) for v in viewers),
                    "errors": sum(v.errors for v in viewers),
                    "mbytes": round(sum(v.bytes for v in viewers) / 1e6, 1),
                    "playlist_ms": {"p50": pct([x for v in viewers for x in v.playlist_ms], 50),
                                    "p99": pct([x for v in viewers for x in v.playlist_ms], 99)},
                    "segment_ms": {"p50": pct([x for v in viewers for x in v.segment_ms], 50),
                                   "p99": pct([x for v in viewers for x in v.segment_ms], 99)}},
        }
        out["forward_metrics"] = forward
        for n in out["nodes"]:
            if n["rss_mib"] is not None:
                n["rss_mib"] = round(n["rss_mib"], 1)
        out["cpu_publish_sum_pct"] = round(sum(n["cpu_publish_pct"] or 0 for n in out["nodes"]), 1)
        out["cpu_publish_max_pct"] = round(max(n["cpu_publish_pct"] or 0 for n in out["nodes"]), 1)
        print(json.dumps(out))
        if a.out:
            with open(a.out, "w") as f:
                json.dump(out, f, indent=1)
    finally:
        cleanup()


if __name__ == "__main__":
    sys.exit(main())
