#!/usr/bin/env python3
"""RTMP -> live HLS benchmark runner: WeMaster vs nginx + libnginx-mod-rtmp, side by side.

Driven by bench/rtmp-hls.sh, which prepares everything this needs (input file, wemaster binary,
PostgreSQL, Redis, a user) and passes it through the environment. Standard library only.

One *run* = one server, N publishers, D seconds:
  1. start a fresh server process (wemaster or nginx) on free ports;
  2. (wemaster) create N live streams through the API; measure idle RSS;
  3. start N `ffmpeg -re -stream_loop -1 -i input.flv -c copy -f flv rtmp://...` publishers,
     each reporting its progress (out_time) every 100 ms;
  4. poll every stream's playlist over HTTP every 50 ms (both servers, same client code),
     recording the moment each new segment appears;
  5. sample CPU (utime+stime of the server's processes) once a second; RSS at the end;
  6. stop publishers and server, compute the metrics, append the run to the results file.

Segment delay: a segment whose end is at media time T (sum of EXTINF from the stream's first
segment up to and including it) was fully sent by the publisher at start + T, where start is the
publisher's media-time origin on the wall clock. start is estimated from ffmpeg's progress
reports as min(wall_time - out_time): with -re ffmpeg sends media time t at start + t. The same
estimate is used for both servers; the delay is "appeared in playlist - (start + T)".
"""

import argparse
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
NCPU = os.cpu_count() or 1


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# /proc helpers


def proc_stat(pid):
    """(comm, ppid, utime+stime ticks) of a process or thread, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    comm = s[s.index("(") + 1 : s.rindex(")")]
    rest = s[s.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); utime = field 14, stime = field 15, ppid = field 4
    return comm, int(rest[1]), int(rest[11]) + int(rest[12])


def cpu_ticks(pids):
    total = 0
    for p in pids:
        st = proc_stat(p)
        if st:
            total += st[2]
    return total


def rss_kib(pids):
    """(sum of VmRSS, sum of Pss) in KiB over pids."""
    rss = pss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                        break
        except OSError:
            pass
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                        break
        except OSError:
            pass
    return rss, pss


def children_of(ppid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(int(d))
            if st and st[1] == ppid:
                out.append(int(d))
    return out


def system_busy_ticks():
    """(busy, total) jiffies summed over all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    v = [int(x) for x in parts]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    total = sum(v[:8])
    return total - idle, total


def thread_ticks(pid):
    """{tid: (comm, ticks)} for every thread of pid."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tids:
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                s = f.read()
        except OSError:
            continue
        comm = s[s.index("(") + 1 : s.rindex(")")]
        rest = s[s.rindex(")") + 2 :].split()
        out[int(t)] = (comm, int(rest[11]) + int(rest[12]))
    return out


def ctx_switches(pids):
    """Voluntary + involuntary context switches summed over every thread of pids."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for t in tids:
            try:
                with open(f"/proc/{pid}/task/{t}/status") as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                            total += int(line.split()[1])
            except OSError:
                pass
    return total


def thread_group(comm):
    """Coarse class of a wemaster thread from its name (15 chars at most in /proc)."""
    rules = [
        (r"^src:src$", "appsrc thread: appsrc -> flvdemux -> (queue)"),
        (r"^queue\d+:src$", "demux queues: -> h264parse / aacparse -> (splitmuxsink queue)"),
        (r"^queue_(video|sink)", "splitmuxsink input queues -> (mpegtsmux)"),
        (r"^muxer:src$", "mpegtsmux aggregator -> filesink"),
        (r"^wm-live-bus$", "bus watcher (wm-live-bus)"),
        (r":s(rc?)?$", "other GStreamer streaming thread"),
        (r"^tokio-r", "tokio"),
        (r"^wemaster$", "main thread"),
    ]
    for pat, name in rules:
        if re.search(pat, comm):
            return name
    return f"other ({comm})"


def group_threads(ticks_by_tid, async_workers):
    """{tid: group}; the lowest-numbered tokio threads are the async workers (created with the
    runtime), the later ones the blocking pool (one FLV pump per publisher)."""
    groups = {tid: thread_group(comm) for tid, (comm, _) in ticks_by_tid.items()}
    tokio = sorted(t for t, g in groups.items() if g == "tokio")
    for i, t in enumerate(tokio):
        groups[t] = ("tokio async workers (RTMP ingest, HTTP, supervisor)" if i < async_workers
                     else "tokio blocking pool (FLV pump per publisher -> appsrc)")
    return groups


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ports(fixed):
    """(rtmp, http): the fixed "RTMP,HTTP" pair if given, else two free ports."""
    if fixed:
        rtmp, http = (int(p) for p in fixed.split(","))
        return rtmp, http
    return free_port(), free_port()


def wait_port(port, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


# ---------------------------------------------------------------------------------------------
# servers


class Wemaster:
    name = "wemaster"

    def __init__(self, args, workdir):
        self.args = args
        self.dir = workdir
        self.rtmp_port, self.http_port = ports(getattr(args, "wemaster_ports", None))
        self.proc = None
        self.streams = []  # (id, key)
        self.token = None
        self.record = False
        self.s3 = None

    def start(self):
        os.makedirs(f"{self.dir}/spool", exist_ok=True)
        env = dict(os.environ)
        storage = {"WEMASTER__STORAGE__BACKEND": "local",
                   "WEMASTER__STORAGE__LOCAL__ROOT": f"{self.dir}/objects"}
        if self.args.storage == "s3":
            # A private s3s-fs (objects are plain files under {dir}/s3/<bucket>/).
            port = free_port()
            key, secret = "bench", secrets.token_hex(16)
            os.makedirs(f"{self.dir}/s3", exist_ok=True)
            self.s3log = open(f"{self.dir}/s3s-fs.log", "wb")
            self.s3 = subprocess.Popen(
                [self.args.s3s_fs, "--host", "127.0.0.1", "--port", str(port),
                 "--access-key", key, "--secret-key", secret, f"{self.dir}/s3"],
                stdout=self.s3log, stderr=subprocess.STDOUT)
            if not wait_port(port, 15):
                raise RuntimeError(f"s3s-fs did not start; see {self.dir}/s3s-fs.log")
            storage = {"WEMASTER__STORAGE__BACKEND": "s3",
                       "WEMASTER__STORAGE__S3__ENDPOINT": f"http://127.0.0.1:{port}",
                       "WEMASTER__STORAGE__S3__BUCKET": "wemaster-bench",
                       "WEMASTER__STORAGE__S3__ACCESS_KEY_ID": key,
                       "WEMASTER__STORAGE__S3__SECRET_ACCESS_KEY": secret,
                       "WEMASTER__STORAGE__S3__FORCE_PATH_STYLE": "true",
                       "WEMASTER__STORAGE__S3__CREATE_BUCKET": "true"}
        env.update(storage)
        env.update(
            {
                "WEMASTER__HTTP__LISTEN": f"127.0.0.1:{self.http_port}",
                "WEMASTER__HTTP__PUBLIC_URL": f"http://127.0.0.1:{self.http_port}",
                "WEMASTER__RTMP__LISTEN": f"127.0.0.1:{self.rtmp_port}",
                "WEMASTER__MEDIA__PIPELINES_DIR": self.args.pipelines_dir,
                "WEMASTER__MEDIA__SPOOL_DIR": f"{self.dir}/spool",
                "WEMASTER__LIVE__SEGMENT_DURATION_S": "2",
                "WEMASTER__LIVE__WINDOW_SEGMENTS": "6",
                "WEMASTER__LOG__FORMAT": "json",
            }
        )
        if not env.get("WEMASTER__AUTH__KEYS_DIR"):
            env["WEMASTER__AUTH__KEYS_DIR"] = f"{self.dir}/keys"
        self.logf = open(f"{self.dir}/server.log", "wb")
        self.proc = subprocess.Popen(
            [self.args.wemaster_bin, "serve"],
            cwd=self.dir,
            env=env,
            stdout=self.logf,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wemaster exited ({self.proc.returncode}); see {self.dir}/server.log")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=1) as r:
                    if r.status == 200 and wait_port(self.rtmp_port, 10):
                        break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("wemaster did not become healthy")
        self.token = self._api("POST", "/api/v1/auth/login",
                               {"email": self.args.email, "password": self.args.password})["access_token"]

    def _api(self, method, path, body=None):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"content-type": "application/json",
                     **({"authorization": f"Bearer {self.token}"} if self.token else {})},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def prepare(self, n):
        for i in range(n):
            # Recording explicit (the API's default is record: true). A recorded session ends as
            # soon as its publisher stops (window 0), so time to ready starts at the stop.
            s = self._api("POST", "/api/v1/live-streams",
                          {"title": f"bench {i}", "record": self.record,
                           "reconnect_window_s": 0 if self.record else 5})
            self.streams.append((s["id"], s["stream_key"]))

    def pids(self):
        return [self.proc.pid] if self.proc and self.proc.poll() is None else []

    def recording(self, i):
        """The recording of stream i (the newest), or None."""
        items = self._api("GET", f"/api/v1/recordings?live_stream_id={self.streams[i][0]}")["items"]
        return items[0] if items else None

    def recordings(self):
        """{stream index: its newest recording} in one request (this server's streams only)."""
        index = {sid: i for i, (sid, _) in enumerate(self.streams)}
        items = self._api("GET", "/api/v1/recordings?limit=100")["items"]  # newest first
        out = {}
        for r in items:
            i = index.get(r["live_stream_id"])
            if i is not None and i not in out:
                out[i] = r
        return out

    def metrics(self):
        """{name{labels}: value} of the recording_* metrics."""
        out = {}
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("recording"):
                    k, _, v = line.rpartition(" ")
                    try:
                        out[k] = float(v)
                    except ValueError:
                        pass
        return out

    def objects_root(self):
        return f"{self.dir}/s3" if self.args.storage == "s3" else f"{self.dir}/objects"

    def publish_url(self, i):
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{self.streams[i][1]}"

    def playlist(self, i):
        return ("127.0.0.1", self.http_port, f"/hls/live/{self.streams[i][0]}/index.m3u8")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "logf", None):
            self.logf.close()
        if self.s3 and self.s3.poll() is None:
            self.s3.terminate()
            self.s3.wait(10)
            self.s3log.close()

    def version(self):
        return subprocess.run([self.args.wemaster_bin, "--version"], capture_output=True,
                              text=True).stdout.strip()


NGINX_CONF = """\
load_module {module};
daemon off;
master_process on;
worker_processes auto;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
rtmp {{
    server {{
        listen 127.0.0.1:{rtmp_port};
        application live {{
            live on;
{record}
            hls on;
            hls_path {dir}/hls;
            hls_fragment 2s;
            hls_playlist_length 12s;
        }}
    }}
}}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    sendfile on;
    types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
    server {{
        listen 127.0.0.1:{http_port};
        location /hls/ {{
            alias {dir}/hls/;
            add_header Cache-Control no-cache;
        }}
    }}
}}
"""


class Nginx:
    name = "nginx"

    def __init__(self, args, workdir):
        self.args = args
        self.dir = workdir
        self.rtmp_port, self.http_port = ports(getattr(args, "nginx_ports", None))
        self.proc = None
        self.streams = []
        self.record = False

    def start(self):
        os.makedirs(f"{self.dir}/hls", exist_ok=True)
        os.makedirs(f"{self.dir}/tmp", exist_ok=True)
        os.makedirs(f"{self.dir}/rec", exist_ok=True)
        conf = f"{self.dir}/nginx.conf"
        # Like with like: `record all` writes every stream's audio and video to one FLV file
        # per publish (what nginx-rtmp offers as a recording; no upload, no MP4).
        record = (f"            record all;\n            record_path {self.dir}/rec;\n"
                  "            record_unique on;" if self.record else "            record off;")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(module=self.args.nginx_module, dir=self.dir, record=record,
                                      rtmp_port=self.rtmp_port, http_port=self.http_port))
        self.logf = open(f"{self.dir}/server.log", "wb")
        self.proc = subprocess.Popen(["nginx", "-c", conf, "-p", self.dir],
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        if not (wait_port(self.rtmp_port, 15) and wait_port(self.http_port, 5)):
            raise RuntimeError(f"nginx did not start; see {self.dir}/error.log")
        # Workers up?
        deadline = time.monotonic() + 5
        while not children_of(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)

    def prepare(self, n):
        self.streams = [f"bench{i}" for i in range(n)]

    def pids(self):
        if not self.proc or self.proc.poll() is not None:
            return []
        return [self.proc.pid] + children_of(self.proc.pid)

    def publish_url(self, i):
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{self.streams[i]}"

    def playlist(self, i):
        return ("127.0.0.1", self.http_port, f"/hls/{self.streams[i]}.m3u8")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        if getattr(self, "logf", None):
            self.logf.close()

    def version(self):
        r = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
        return (r.stderr or r.stdout).strip()


# ---------------------------------------------------------------------------------------------
# clients


class Publisher:
    """One ffmpeg -re publisher; records (wall, out_time) pairs from its progress reports."""

    def __init__(self, args, url):
        self.url = url
        self.reports = []  # (monotonic, out_time_s)
        self.launched = time.monotonic()
        self.proc = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-nostats",
             "-progress", "pipe:1", "-stats_period", "0.1",
             "-re", "-stream_loop", "-1", "-i", args.input,
             "-c", "copy", "-f", "flv", url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        )
        self.err = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        out_us = None
        for line in self.proc.stdout:
            now = time.monotonic()
            if line.startswith("out_time_us="):
                v = line.split("=", 1)[1].strip()
                out_us = int(v) if v.lstrip("-").isdigit() else None
            elif line.startswith("progress="):
                if out_us is not None and out_us > 0:
                    self.reports.append((now, out_us / 1e6))

    def _read_err(self):
        for line in self.proc.stderr:
            if len(self.err) < 50:
                self.err.append(line.rstrip())

    def origin(self):
        """Wall (monotonic) time of media time 0 as sent: min(wall - out_time)."""
        if not self.reports:
            return None
        return min(w - t for w, t in self.reports)

    def pid(self):
        return self.proc.pid if self.proc.poll() is None else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.proc


class Poller(threading.Thread):
    """Poll one playlist over HTTP (keep-alive) every `interval` s; first-seen time per segment."""

    EXTINF = re.compile(r"#EXTINF:([0-9.]+)")

    def __init__(self, host, port, path, interval, stop_event):
        super().__init__(daemon=True)
        self.host, self.port, self.path = host, port, path
        self.interval = interval
        self.stop_event = stop_event
        self.seen = {}  # seq -> (first_seen_monotonic, duration_s, uri)
        self.requests = 0
        self.errors = 0

    def run(self):
        conn = None
        next_t = time.monotonic()
        while not self.stop_event.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
                conn.request("GET", self.path)
                resp = conn.getresponse()
                body = resp.read().decode("utf-8", "replace")
                now = time.monotonic()
                self.requests += 1
                if resp.status == 200:
                    self._parse(body, now)
            except (OSError, http.client.HTTPException):
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
            next_t += self.interval
            delay = next_t - time.monotonic()
            if delay > 0:
                self.stop_event.wait(delay)
            else:
                next_t = time.monotonic()
        if conn is not None:
            conn.close()

    def _parse(self, body, now):
        seq = None
        dur = None
        for line in body.splitlines():
            line = line.strip()
            if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
                seq = int(line.split(":", 1)[1])
            elif line.startswith("#EXTINF:"):
                m = self.EXTINF.match(line)
                dur = float(m.group(1)) if m else None
            elif line and not line.startswith("#"):
                if seq is None:
                    seq = 0
                if seq not in self.seen and dur is not None:
                    self.seen[seq] = (now, dur, line)
                seq += 1
                dur = None


# ---------------------------------------------------------------------------------------------
# a run


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(v) - 1)
    return v[f] + (v[c] - v[f]) * (k - f)


def heavy_processes():
    """Other people's heavy processes (compilers, linkers, fuzzers) now running."""
    pat = re.compile(r"^(rustc|cc1|cc1plus|ld|ld\.lld|lld|mold|clang|gcc|c\+\+|libfuzzer|afl-fuzz)$")
    found = []
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        st = proc_stat(int(d))
        if st and pat.match(st[0]):
            found.append(st[0])
    return found


def top_processes(seconds=3.0, k=5):
    """The k processes that used most CPU over `seconds`: [(comm, cores)]."""
    def snap():
        out = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                st = proc_stat(int(d))
                if st:
                    out[int(d)] = (st[0], st[2])
        return out
    a = snap()
    b0, t0 = system_busy_ticks()
    time.sleep(seconds)
    b1, t1 = system_busy_ticks()
    b = snap()
    use = sorted(((b[p][0], (b[p][1] - a[p][1]) / CLK_TCK / seconds) for p in b if p in a),
                 key=lambda x: -x[1])[:k]
    busy = (b1 - b0) / max(1, t1 - t0)
    return busy, [(c, round(u, 2)) for c, u in use if u > 0.02]


_QUIET_TIMED_OUT = [False]


def wait_quiet(args):
    """Wait (poll every 30 s, up to args.quiet_wait s; 60 s once a wait has timed out) for a
    quiet machine: no compiler/linker/fuzzer running and the whole machine under
    args.quiet_busy busy. Returns what was seen, recorded with the run."""
    budget = 60 if _QUIET_TIMED_OUT[0] else args.quiet_wait
    deadline = time.monotonic() + budget
    waited = 0.0
    t0 = time.monotonic()
    while True:
        heavy = sorted(set(heavy_processes()))
        busy, top = top_processes(3.0)
        if not heavy and busy < args.quiet_busy:
            return {"quiet": True, "busy_before": round(busy, 3), "waited_s": round(waited)}
        if time.monotonic() >= deadline:
            _QUIET_TIMED_OUT[0] = True
            log(f"machine still busy ({busy:.0%}; {heavy[:5]}; top {top}): measuring anyway")
            return {"quiet": False, "busy_before": round(busy, 3), "heavy": heavy, "top": top,
                    "waited_s": round(waited)}
        log(f"machine busy ({busy:.0%} of {NCPU} cores; {heavy[:5]}; top {top}): waiting 30 s")
        time.sleep(30)
        waited = time.monotonic() - t0


def run_one(args, kind, n, rep, record=False):
    workdir = tempfile.mkdtemp(prefix=f"wm-bench-{kind}-", dir=args.tmp)
    server = (Wemaster if kind == "wemaster" else Nginx)(args, workdir)
    server.record = record
    quiet = wait_quiet(args) if args.quiet_wait > 0 else {"quiet": None}
    log(f"run: {kind} N={n} rep={rep} D={args.duration}s record={'yes' if record else 'no'}"
        + (f" storage={args.storage}" if record and kind == "wemaster" else "") + f" (dir {workdir})")
    pubs, pollers = [], []
    stop_polling = threading.Event()
    result = {"server": kind, "n": n, "rep": rep, "duration_s": args.duration,
              "skip_s": args.skip, "poll_ms": args.poll_ms, "record": record,
              "storage": args.storage if kind == "wemaster" else "file", **quiet}
    upload_samples = []  # (t, queue depth, oldest age s) while live
    try:
        server.start()
        server.prepare(n)
        time.sleep(2.0)
        pids = server.pids()
        idle_rss, idle_pss = rss_kib(pids)
        result["processes_idle"] = len(pids)

        t_start = time.monotonic()
        for i in range(n):
            pubs.append(Publisher(args, server.publish_url(i)))
        for i in range(n):
            host, port, path = server.playlist(i)
            p = Poller(host, port, path, args.poll_ms / 1000.0, stop_polling)
            p.start()
            pollers.append(p)

        # CPU samples once a second: (t, server ticks, publishers ticks, self ticks, sys busy, sys total)
        samples = []
        t_end = t_start + args.duration
        while True:
            now = time.monotonic()
            spids = server.pids()
            if not spids:
                raise RuntimeError(f"{kind} died during the run; see {workdir}")
            busy, total = system_busy_ticks()
            samples.append((now - t_start, cpu_ticks(spids),
                            cpu_ticks([p.proc.pid for p in pubs if p.proc.poll() is None]),
                            cpu_ticks([os.getpid()]), busy, total, len(spids)))
            if record and kind == "wemaster" and len(samples) % 2 == 0:
                try:
                    m = server.metrics()
                    upload_samples.append((round(now - t_start, 1),
                                           m.get("recording_upload_queue_depth", 0),
                                           m.get("recording_upload_oldest_age_seconds", 0)))
                except OSError:
                    pass
            if now >= t_end:
                break
            time.sleep(min(1.0, max(0.0, t_end - now)))
        end_pids = server.pids()
        end_rss, end_pss = rss_kib(end_pids)
        stop_polling.set()
        for p in pollers:
            p.join(5)
        dead = [i for i, p in enumerate(pubs) if p.proc.poll() is not None]

        # steady window: first sample at or after skip, to the last one
        first = next(s for s in samples if s[0] >= args.skip)
        last = samples[-1]
        wall = last[0] - first[0]
        srv_cpu = (last[1] - first[1]) / CLK_TCK / wall  # cores
        pub_cpu = (last[2] - first[2]) / CLK_TCK / wall
        self_cpu = (last[3] - first[3]) / CLK_TCK / wall
        sys_cpu = (last[4] - first[4]) / max(1, last[5] - first[5]) * NCPU
        result.update({
            "steady_window_s": round(wall, 2),
            "server_cpu_cores": round(srv_cpu, 4),
            "cpu_per_stream_pct": round(100 * srv_cpu / n, 3),
            "publishers_cpu_cores": round(pub_cpu, 4),
            "harness_cpu_cores": round(self_cpu, 4),
            "machine_cpu_cores": round(sys_cpu, 4),
            "other_cpu_cores": round(sys_cpu - srv_cpu - pub_cpu - self_cpu, 4),
            "rss_idle_kib": idle_rss, "rss_end_kib": end_rss,
            "pss_idle_kib": idle_pss, "pss_end_kib": end_pss,
            "rss_per_stream_kib": round((end_rss - idle_rss) / n, 1),
            "pss_per_stream_kib": round((end_pss - idle_pss) / n, 1),
            "processes_end": len(end_pids),
            "publishers_died": len(dead),
            "publisher_errors": [pubs[i].err[-3:] for i in dead][:3],
        })

        # segment delay
        delays, launch_delays, per_stream, durations = [], [], [], []
        for i, (pub, pol) in enumerate(zip(pubs, pollers)):
            origin = pub.origin()
            seen = pol.seen
            info = {"segments": len(seen), "requests": pol.requests, "errors": pol.errors,
                    "origin_after_launch_s": None if origin is None else round(origin - pub.launched, 3)}
            if origin is None or not seen:
                per_stream.append(info)
                continue
            seqs = sorted(seen)
            first_seq = seqs[0]
            first_seen_playlist = seen[first_seq]
            # the first segment must be the stream's first one (media time 0)
            if first_seq != 0:
                info["note"] = f"first listed segment has sequence {first_seq}"
            t_media = 0.0
            prev = None
            for s in seqs:
                if prev is not None and s != prev + 1:
                    info["gap_at"] = s
                    break
                appeared, dur, _uri = seen[s]
                t_media += dur
                durations.append(dur)
                delays.append(appeared - (origin + t_media))
                launch_delays.append(appeared - (pub.launched + t_media))
                prev = s
            per_stream.append(info)
        result.update({
            "noisy": sys_cpu - srv_cpu - pub_cpu - self_cpu > args.noise_max,
        "segments_measured": len(delays),
            "segment_delay_median_s": percentile(delays, 50),
            "segment_delay_p90_s": percentile(delays, 90),
            "segment_delay_min_s": min(delays) if delays else None,
            "segment_delay_max_s": max(delays) if delays else None,
            "segment_delay_from_launch_median_s": percentile(launch_delays, 50),
            "segment_duration_median_s": percentile(durations, 50),
            "origin_after_launch_median_s": percentile(
                [s["origin_after_launch_s"] for s in per_stream if s["origin_after_launch_s"] is not None], 50),
            "streams": per_stream,
            "cpu_timeline": [(round(s[0], 2), s[1], s[6]) for s in samples],
        })
        if record and kind == "wemaster":
            result["recording"] = recording_phase(args, server, pubs, upload_samples)
        elif record:
            result["recording"] = nginx_recording_phase(server, pubs)
    finally:
        stop_polling.set()
        procs = [p.stop() for p in pubs]
        for pr in procs:
            try:
                pr.wait(10)
            except subprocess.TimeoutExpired:
                pr.kill()
                pr.wait()
        server.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    log(f"  cpu/stream {result['cpu_per_stream_pct']:.2f}% of a core, "
        f"rss/stream {result['rss_per_stream_kib'] / 1024:.2f} MiB, "
        f"delay median {fmt_s(result['segment_delay_median_s'])} p90 {fmt_s(result['segment_delay_p90_s'])} "
        f"({result['segments_measured']} segments), other load {result['other_cpu_cores']:.2f} cores")
    rec = result.get("recording") or {}
    if rec.get("ready_after_stop_median_s") is not None:
        log(f"  ready after stop: median {fmt_s(rec['ready_after_stop_median_s'])} "
            f"p90 {fmt_s(rec['ready_after_stop_p90_s'])} max {fmt_s(rec['ready_after_stop_max_s'])} "
            f"({rec['ready']}/{n} ready); finalize median {fmt_s(rec.get('finalize_median_s'))}; "
            f"MP4 after stop: median {fmt_s(rec.get('mp4_after_stop_median_s'))} "
            f"p90 {fmt_s(rec.get('mp4_after_stop_p90_s'))} max {fmt_s(rec.get('mp4_after_stop_max_s'))} "
            f"({len(rec.get('mp4_after_stop_s') or [])}/{n}); "
            f"upload {rec.get('upload_mean_s')} s/segment, {rec.get('upload_mib_per_s_per_upload')} MiB/s per upload")
    return result


def tree_bytes(root, suffix):
    """(files, bytes) of the files under root whose name ends with suffix."""
    files = total = 0
    for d, _, names in os.walk(root):
        for name in names:
            if name.endswith(suffix):
                files += 1
                try:
                    total += os.path.getsize(os.path.join(d, name))
                except OSError:
                    pass
    return files, total


def stop_publishers(pubs):
    """SIGINT every publisher at once; (monotonic, wall) time of the stop, exit times."""
    t_mono, t_wall = time.monotonic(), time.time()
    for p in pubs:
        p.stop()
    exited = []
    for p in pubs:
        try:
            p.proc.wait(10)
        except subprocess.TimeoutExpired:
            p.proc.kill()
            p.proc.wait()
        exited.append(time.monotonic() - t_mono)
    return t_mono, t_wall, exited


def nginx_recording_phase(server, pubs):
    """nginx: the FLV file is complete when the publisher's connection closes; its size."""
    _, _, exited = stop_publishers(pubs)
    time.sleep(1.0)
    files, size = tree_bytes(f"{server.dir}/rec", ".flv")
    return {"publisher_exit_max_s": round(max(exited), 3) if exited else None,
            "flv_files": files, "flv_bytes": size}


def recording_phase(args, server, pubs, upload_samples):
    """WeMaster: stop every publisher at once, then poll each stream's recording until it is
    `ready` (or failed, or --ready-timeout) and then until its MP4 is there (`mp4_url`, or the
    "MP4 and poster done" log line without one); time to ready, time to MP4, finalization CPU,
    upload figures. Since 27d631a `ready` (final VOD playlist) comes before the MP4 and poster."""
    m0 = server.metrics()
    pids = server.pids()
    ticks0 = cpu_ticks(pids)
    busy0, total0 = system_busy_ticks()
    t_stop, wall_stop, exited = stop_publishers(pubs)
    n = len(server.streams)
    ready_at, status, rows = {}, {}, {}
    mp4_at, extras_at = {}, {}
    ready_cpu = ready_busy = None
    deadline = t_stop + args.ready_timeout
    # One list request per poll (the streams of this run are the newest recordings; the
    # per-stream form GET /api/v1/recordings?live_stream_id= answers the same).
    while time.monotonic() < deadline:
        try:
            recs = server.recordings()
        except OSError:
            recs = {}
        now = time.monotonic()
        for i, r in recs.items():
            if i not in ready_at:
                status[i] = r["status"]
                if r["status"] in ("ready", "failed"):
                    ready_at[i] = now - t_stop
                    rows[i] = r
            if r["status"] == "ready":
                rows[i] = r
                if r.get("mp4_url") and i not in mp4_at:
                    mp4_at[i] = now - t_stop
                if (r.get("mp4_url") or r.get("poster_url")) and i not in extras_at:
                    extras_at[i] = now - t_stop
        if len(ready_at) >= n and ready_cpu is None:
            ready_cpu, ready_busy = cpu_ticks(pids), system_busy_ticks()
        if len(ready_at) >= n:
            # Done when every ready recording has its MP4, or its extras ended without one.
            waiting = [i for i in ready_at if rows[i]["status"] == "ready" and i not in mp4_at]
            if waiting:
                done = extras_done_ids(server)
                waiting = [i for i in waiting if str(rows[i]["id"]) not in done]
            if not waiting:
                break
        time.sleep(args.ready_poll_ms / 1000.0)
    t_done = time.monotonic()
    end_ticks = cpu_ticks(pids)
    busy1, total1 = system_busy_ticks()
    if ready_cpu is None:
        ready_cpu, ready_busy = end_ticks, (busy1, total1)
    fin_cpu = (ready_cpu - ticks0) / CLK_TCK
    all_cpu = (end_ticks - ticks0) / CLK_TCK
    m1 = server.metrics()
    times = [ready_at[i] for i in ready_at if rows[i]["status"] == "ready"]
    mp4_times = list(mp4_at.values())
    out = {
        "stopped": n,
        "ready": len(times),
        "failed": [rows[i].get("failure_reason") for i in rows if rows[i]["status"] == "failed"],
        "not_ready": {str(i): status.get(i) for i in range(n) if i not in ready_at},
        "publisher_exit_max_s": round(max(exited), 3) if exited else None,
        "ready_after_stop_s": sorted(round(t, 3) for t in times),
        "ready_after_stop_median_s": percentile(times, 50),
        "ready_after_stop_p90_s": percentile(times, 90),
        "ready_after_stop_max_s": max(times) if times else None,
        # Time to the MP4: the first poll showing mp4_url (the MP4 stored, DB updated).
        "mp4_after_stop_s": sorted(round(t, 3) for t in mp4_times),
        "mp4_after_stop_median_s": percentile(mp4_times, 50),
        "mp4_after_stop_p90_s": percentile(mp4_times, 90),
        "mp4_after_stop_max_s": max(mp4_times) if mp4_times else None,
        "extras_after_stop_max_s": max(extras_at.values()) if extras_at else None,
        "finalize_phase_s": round(t_done - t_stop, 3),
        # CPU from the stop to the last `ready`, and to the last MP4 (everything).
        "finalize_server_cpu_core_s": round(fin_cpu, 3),
        "finalize_server_cpu_core_s_per_recording": round(fin_cpu / max(1, n), 3),
        "finalize_machine_cpu_cores": round((ready_busy[0] - busy0) / max(1, ready_busy[1] - total0) * NCPU, 3),
        "processing_server_cpu_core_s": round(all_cpu, 3),
        "processing_server_cpu_core_s_per_recording": round(all_cpu / max(1, n), 3),
        "processing_machine_cpu_cores": round((busy1 - busy0) / max(1, total1 - total0) * NCPU, 3),
    }
    # ended_at (set when finalization starts) splits the wait in two: until the session's
    # finalization starts (last segment uploaded), then the finalization itself.
    from datetime import datetime
    to_start = []
    for i, r in rows.items():
        if r.get("ended_at"):
            ended = datetime.fromisoformat(r["ended_at"].replace("Z", "+00:00")).timestamp()
            to_start.append(ended - wall_stop)
    out["finalize_start_after_stop_median_s"] = percentile(to_start, 50)
    out["finalize_start_after_stop_max_s"] = max(to_start) if to_start else None
    ready_rows = [r for r in rows.values() if r["status"] == "ready"]
    out["recording_duration_s_median"] = percentile([r["duration_s"] for r in ready_rows], 50)
    out["segments_median"] = percentile([r["segment_count"] for r in ready_rows], 50)
    out["mp4"] = sum(1 for r in ready_rows if r.get("mp4_url"))
    out["poster"] = sum(1 for r in ready_rows if r.get("poster_url"))
    # "recording ready" log lines: finalize_s and its steps.
    fin, steps = [], {}
    try:
        with open(f"{server.dir}/server.log", errors="replace") as f:
            for line in f:
                if "recording ready" not in line:
                    continue
                try:
                    d = json.loads(line)
                except ValueError:
                    continue
                fields = d.get("fields", d)
                if "finalize_s" in fields:
                    fin.append(float(fields["finalize_s"]))
                st = fields.get("steps")
                if isinstance(st, str):
                    try:
                        st = json.loads(st)
                    except ValueError:
                        st = None
                for k, v in (st or {}).items():
                    steps.setdefault(k, []).append(float(v))
    except OSError:
        pass
    # "recording MP4 and poster done" log lines (since 27d631a): took_s and its steps.
    took, xsteps = [], {}
    for fields in log_lines(server, "recording MP4 and poster done"):
        if "took_s" in fields:
            took.append(float(fields["took_s"]))
        st = fields.get("steps")
        if isinstance(st, str):
            try:
                st = json.loads(st)
            except ValueError:
                st = None
        for k, v in (st or {}).items():
            xsteps.setdefault(k, []).append(float(v))
    out["extras_median_s"] = percentile(took, 50)
    out["extras_max_s"] = max(took) if took else None
    out["extras_steps_median_s"] = {k: round(percentile(v, 50), 4) for k, v in xsteps.items()}
    out["extras_steps_max_s"] = {k: round(max(v), 4) for k, v in xsteps.items()}
    out["finalize_median_s"] = percentile(fin, 50)
    out["finalize_max_s"] = max(fin) if fin else None
    out["finalize_steps_median_s"] = {k: round(percentile(v, 50), 4) for k, v in steps.items()}
    out["finalize_steps_max_s"] = {k: round(max(v), 4) for k, v in steps.items()}
    # Uploads: segments and their bytes in storage, time per upload from the histogram.
    seg_files, seg_bytes = tree_bytes(server.objects_root(), ".ts")
    mp4_files, mp4_bytes = tree_bytes(server.objects_root(), ".mp4")
    count = m1.get("recording_upload_seconds_count", 0)
    total_s = m1.get("recording_upload_seconds_sum", 0)
    out.update({
        "segments_uploaded_total": m1.get("recording_segments_uploaded_total"),
        "segments_uploaded_after_stop": (m1.get("recording_segments_uploaded_total", 0)
                                         - m0.get("recording_segments_uploaded_total", 0)),
        "upload_failures_total": m1.get("recording_upload_failures_total", 0),
        "segment_objects": seg_files, "segment_bytes": seg_bytes,
        "mp4_objects": mp4_files, "mp4_bytes": mp4_bytes,
        "upload_count": count, "upload_seconds_sum": round(total_s, 4),
        "upload_mean_s": round(total_s / count, 4) if count else None,
        "upload_mib_per_s_per_upload": (round(seg_bytes / total_s / 2**20, 1)
                                        if total_s and count == seg_files else None),
        "live_ingest_mib_per_s": round(seg_bytes / 2**20 / max(1e-9, args.duration), 3),
        "upload_queue_depth_max": max((s[1] for s in upload_samples), default=None),
        "upload_oldest_age_max_s": max((s[2] for s in upload_samples), default=None),
        "upload_buckets": {k: v for k, v in m1.items() if k.startswith("recording_upload_seconds_bucket")},
    })
    return out


def log_lines(server, message):
    """The fields of the server's JSON log lines whose message contains `message`."""
    out = []
    try:
        with open(f"{server.dir}/server.log", errors="replace") as f:
            for line in f:
                if message not in line:
                    continue
                try:
                    d = json.loads(line)
                except ValueError:
                    continue
                out.append(d.get("fields", d))
    except OSError:
        pass
    return out


def extras_done_ids(server):
    """Recording ids whose MP4/poster work has ended (with or without an MP4)."""
    return {str(f.get("recording_id")) for f in log_lines(server, "recording MP4 and poster done")}


def fmt_s(v):
    return "-" if v is None else f"{v:.3f}s"


# ---------------------------------------------------------------------------------------------
# profile


def profile(args):
    """wemaster (and nginx for reference) at N=args.profile_n: perf record + thread breakdown."""
    out = {"n": args.profile_n, "seconds": args.profile_seconds}
    perf_ok = shutil.which("perf") is not None and subprocess.run(
        ["perf", "record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"],
        capture_output=True).returncode == 0
    out["perf"] = perf_ok
    for kind in args.profile_servers:
        workdir = tempfile.mkdtemp(prefix=f"wm-prof-{kind}-", dir=args.tmp)
        server = (Wemaster if kind == "wemaster" else Nginx)(args, workdir)
        pubs, pollers = [], []
        stop_polling = threading.Event()
        entry = {}
        try:
            wait_quiet(args) if args.quiet_wait > 0 else None
            log(f"profile: {kind} N={args.profile_n}")
            server.start()
            server.prepare(args.profile_n)
            for i in range(args.profile_n):
                pubs.append(Publisher(args, server.publish_url(i)))
            for i in range(args.profile_n):
                p = Poller(*server.playlist(i), args.poll_ms / 1000.0, stop_polling)
                p.start()
                pollers.append(p)
            time.sleep(args.skip)
            pids = server.pids()
            before = {pid: thread_ticks(pid) for pid in pids}
            cs0 = ctx_switches(pids)
            t0 = time.monotonic()
            # Thread breakdown and context switches without perf attached (perf's sampling
            # costs CPU itself), then perf over a second window of the same length.
            time.sleep(args.profile_seconds)
            wall = time.monotonic() - t0
            after = {pid: thread_ticks(pid) for pid in pids}
            entry["context_switches_per_s"] = round((ctx_switches(pids) - cs0) / wall)
            entry["context_switches_per_s_per_stream"] = round((ctx_switches(pids) - cs0) / wall / args.profile_n)
            groups, threads = {}, {}
            nthreads = 0
            for pid in pids:
                names = (group_threads(after[pid], NCPU) if kind == "wemaster" else
                         {t: ("nginx master" if pid == server.proc.pid else "nginx worker")
                          for t in after[pid]})
                for tid, (comm, ticks) in after[pid].items():
                    nthreads += 1
                    d = ticks - before[pid].get(tid, (comm, 0))[1]
                    g = names[tid]
                    groups[g] = groups.get(g, 0) + d
                    threads[g] = threads.get(g, 0) + 1
            total = sum(groups.values())
            entry["threads"] = nthreads
            entry["cpu_cores"] = round(total / CLK_TCK / wall, 4)
            entry["cpu_per_stream_pct"] = round(100 * total / CLK_TCK / wall / args.profile_n, 3)
            entry["thread_groups"] = sorted(
                ({"group": g, "threads": threads[g],
                  "cpu_pct_of_core": round(100 * t / CLK_TCK / wall, 2),
                  "share": round(t / max(1, total), 3)} for g, t in groups.items()),
                key=lambda x: -x["cpu_pct_of_core"])
            data = f"{args.results_dir}/perf-{kind}-n{args.profile_n}{args.perf_suffix}.data"
            if perf_ok:
                cg = (["-F", "999", "-g"] if args.perf_callgraph == "fp"
                      else ["-F", "499", "--call-graph", "dwarf,16384"])
                subprocess.run(["perf", "record", "-e", "cpu-clock", *cg,
                                "-p", ",".join(map(str, pids)), "-o", data, "--",
                                "sleep", str(args.profile_seconds)],
                               capture_output=True)
            if perf_ok and os.path.exists(data):
                entry["perf_data"] = data
                for name, sort in (("by_dso_symbol", "dso,sym"), ("by_thread", "comm"), ("by_dso", "dso"),
                                   ("by_thread_dso", "comm,dso")):
                    r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                                        "--sort", sort, "-g", "none", "--percent-limit", "0.5"],
                                       capture_output=True, text=True)
                    lines = [l for l in r.stdout.splitlines() if l.strip() and not l.startswith("#")]
                    entry[name] = lines[:45]
                    with open(f"{args.results_dir}/perf-{kind}-n{args.profile_n}{args.perf_suffix}-{name}.txt", "w") as f:
                        f.write(r.stdout)
                r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--children",
                                    "--sort", "sym", "-g", "none", "--percent-limit", "2"],
                                   capture_output=True, text=True)
                with open(f"{args.results_dir}/perf-{kind}-n{args.profile_n}{args.perf_suffix}-children.txt", "w") as f:
                    f.write(r.stdout)
                entry["children"] = [l for l in r.stdout.splitlines() if l.strip() and not l.startswith("#")][:40]
        finally:
            stop_polling.set()
            for p in pubs:
                p.stop()
            for p in pubs:
                try:
                    p.proc.wait(10)
                except subprocess.TimeoutExpired:
                    p.proc.kill()
            server.stop()
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
        out[kind] = entry
        log(f"  {kind}: {entry.get('threads')} threads, {entry.get('cpu_per_stream_pct')}% of a core per stream, "
            f"{entry.get('context_switches_per_s_per_stream')} context switches/s per stream")
        for g in entry.get("thread_groups", []):
            log(f"    {g['cpu_pct_of_core']:7.2f}%  x{g['threads']:<4} {g['group']}")
        for l in entry.get("by_dso_symbol", [])[:25]:
            log(f"    {l}")
    return out


# ---------------------------------------------------------------------------------------------
# summary


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def select_runs(runs, noise_max):
    """Successful runs; noisy ones (other processes busy during the run) only for a (server, N,
    record) that has no clean run."""
    ok = [r for r in runs if "error" not in r]
    for r in ok:
        r.setdefault("noisy", r.get("other_cpu_cores", 0) > noise_max)
    clean = {(r["server"], r["n"], r.get("record", False)) for r in ok if not r["noisy"]}
    return [r for r in ok if not r["noisy"] or (r["server"], r["n"], r.get("record", False)) not in clean]


def summarize(runs):
    by = {}
    for r in runs:
        by.setdefault((r["server"], r["n"]), []).append(r)
    rows = []
    for n in sorted({r["n"] for r in runs}):
        row = {"n": n}
        for kind in ("wemaster", "nginx"):
            rs = by.get((kind, n), [])
            row[kind] = {
                "runs": len(rs),
                "cpu_per_stream_pct": med([r["cpu_per_stream_pct"] for r in rs]),
                "cpu_total_pct": med([100 * r["server_cpu_cores"] for r in rs]),
                "rss_per_stream_mib": med([r["rss_per_stream_kib"] / 1024 for r in rs]),
                "pss_per_stream_mib": med([r["pss_per_stream_kib"] / 1024 for r in rs]),
                "rss_total_mib": med([r["rss_end_kib"] / 1024 for r in rs]),
                "rss_idle_mib": med([r["rss_idle_kib"] / 1024 for r in rs]),
                "delay_median_s": med([r["segment_delay_median_s"] for r in rs]),
                "delay_p90_s": med([r["segment_delay_p90_s"] for r in rs]),
                "segments": sum(r["segments_measured"] for r in rs),
                "other_cpu_cores": med([r["other_cpu_cores"] for r in rs]),
                "all_quiet": all(r.get("quiet") is not False for r in rs),
                "cpu_per_stream_runs": [r["cpu_per_stream_pct"] for r in rs],
            }
        w, x = row["wemaster"], row["nginx"]

        def ratio(k):
            return None if not w[k] or not x[k] else w[k] / x[k]

        row["ratio"] = {k: ratio(k) for k in ("cpu_per_stream_pct", "rss_per_stream_mib",
                                               "rss_total_mib", "delay_median_s", "delay_p90_s")}
        rows.append(row)
    return rows


def f2(v, fmt="{:.2f}"):
    return "-" if v is None else fmt.format(v)


def print_table(rows, file=sys.stdout):
    hdr = ("| N | server | runs | CPU/stream (% core) | CPU total (% core) | RSS/stream (MiB) | "
           "RSS total (MiB) | delay median (s) | delay p90 (s) | segments |")
    print(hdr, file=file)
    print("|" + "---|" * 10, file=file)
    for row in rows:
        for kind in ("wemaster", "nginx"):
            d = row[kind]
            if not d["runs"]:
                continue
            print(f"| {row['n']} | {kind} | {d['runs']} | {f2(d['cpu_per_stream_pct'])} | "
                  f"{f2(d['cpu_total_pct'], '{:.1f}')} | {f2(d['rss_per_stream_mib'])} | "
                  f"{f2(d['rss_total_mib'], '{:.1f}')} | {f2(d['delay_median_s'], '{:.3f}')} | "
                  f"{f2(d['delay_p90_s'], '{:.3f}')} | {d['segments']} |", file=file)
        if not (row["wemaster"]["runs"] and row["nginx"]["runs"]):
            continue
        r = row["ratio"]
        print(f"| {row['n']} | **ratio W/N** | | {f2(r['cpu_per_stream_pct'])}x | | "
              f"{f2(r['rss_per_stream_mib'])}x | {f2(r['rss_total_mib'])}x | "
              f"{f2(r['delay_median_s'])}x | {f2(r['delay_p90_s'])}x | |", file=file)


def recording_rows(runs):
    """One row per recorded run: time to ready, finalization, uploads."""
    rows = []
    for r in runs:
        rec = r.get("recording")
        if not rec or r["server"] != "wemaster":
            continue
        rows.append({"n": r["n"], "duration_s": r["duration_s"], "storage": r.get("storage"),
                     **{k: rec.get(k) for k in (
                         "ready", "stopped", "ready_after_stop_median_s", "ready_after_stop_p90_s",
                         "ready_after_stop_max_s", "finalize_start_after_stop_median_s",
                         "finalize_median_s", "finalize_max_s", "finalize_steps_median_s",
                         "finalize_server_cpu_core_s_per_recording", "segment_bytes",
                         "upload_count", "upload_mean_s", "upload_mib_per_s_per_upload",
                         "live_ingest_mib_per_s", "upload_queue_depth_max",
                         "upload_oldest_age_max_s", "upload_failures_total", "mp4", "poster",
                         "mp4_after_stop_median_s", "mp4_after_stop_p90_s", "mp4_after_stop_max_s",
                         "extras_median_s", "extras_steps_median_s",
                         "processing_server_cpu_core_s_per_recording")}})
    return rows


def print_summary(doc, file=sys.stdout):
    summary = doc["summary"]
    if isinstance(summary, list):  # results from before --record
        summary = {"no_record": summary}
    for mode, rows in summary.items():
        if rows:
            print(f"\n{'recording on' if mode == 'record' else 'recording off'}:\n", file=file)
            print_table(rows, file=file)
    if "record" in summary and "no_record" in summary:
        on = {row["n"]: row for row in summary["record"]}
        print("\nrecording cost (CPU/stream and RSS/stream, on - off):\n", file=file)
        print("| N | server | CPU/stream off | on | delta (points) | RSS/stream off | on | delta (MiB) |", file=file)
        print("|" + "---|" * 8, file=file)
        for row in summary["no_record"]:
            for kind in ("wemaster", "nginx"):
                a, b = row[kind], on.get(row["n"], {}).get(kind)
                if not (a["runs"] and b and b["runs"]):
                    continue
                dc = None if a["cpu_per_stream_pct"] is None else b["cpu_per_stream_pct"] - a["cpu_per_stream_pct"]
                dr = None if a["rss_per_stream_mib"] is None else b["rss_per_stream_mib"] - a["rss_per_stream_mib"]
                print(f"| {row['n']} | {kind} | {f2(a['cpu_per_stream_pct'])} | {f2(b['cpu_per_stream_pct'])} | "
                      f"{f2(dc, '{:+.2f}')} | {f2(a['rss_per_stream_mib'])} | {f2(b['rss_per_stream_mib'])} | "
                      f"{f2(dr, '{:+.2f}')} |", file=file)
    rec = doc.get("recording_summary") or []
    if rec:
        print("\nWeMaster recordings: time from publisher stop to `ready`, finalization, uploads:\n", file=file)
        print("| N | live s | storage | ready | ready median / p90 / max (s) | finalize start (s) | "
              "finalize median / max (s) | finalize CPU/rec (core-s) | upload mean (s) | MiB/s per upload | "
              "ingest MiB/s | queue max | oldest max (s) |", file=file)
        print("|" + "---|" * 13, file=file)
        for r in rec:
            print(f"| {r['n']} | {r['duration_s']:g} | {r['storage']} | {r['ready']}/{r['stopped']} | "
                  f"{f2(r['ready_after_stop_median_s'])} / {f2(r['ready_after_stop_p90_s'])} / "
                  f"{f2(r['ready_after_stop_max_s'])} | {f2(r['finalize_start_after_stop_median_s'])} | "
                  f"{f2(r['finalize_median_s'])} / {f2(r['finalize_max_s'])} | "
                  f"{f2(r['finalize_server_cpu_core_s_per_recording'])} | {f2(r['upload_mean_s'], '{:.4f}')} | "
                  f"{f2(r['upload_mib_per_s_per_upload'], '{:.0f}')} | {f2(r['live_ingest_mib_per_s'], '{:.3f}')} | "
                  f"{f2(r['upload_queue_depth_max'], '{:.0f}')} | {f2(r['upload_oldest_age_max_s'])} |", file=file)
            if r.get("mp4_after_stop_median_s") is not None:
                print(f"  MP4 after stop median / p90 / max (s): {f2(r['mp4_after_stop_median_s'])} / "
                      f"{f2(r['mp4_after_stop_p90_s'])} / {f2(r['mp4_after_stop_max_s'])}; "
                      f"MP4+poster per recording median {f2(r.get('extras_median_s'))} s; "
                      f"CPU to the last MP4 {f2(r.get('processing_server_cpu_core_s_per_recording'))} core-s/rec",
                      file=file)
            if r.get("extras_steps_median_s"):
                print(f"  MP4/poster steps (median s): {r['extras_steps_median_s']}", file=file)
            if r.get("finalize_steps_median_s"):
                print(f"  steps (median s): {r['finalize_steps_median_s']}", file=file)


def summarize_files(files, noise_max):
    by_poll = {}
    for f in files:
        with open(f) as fh:
            d = json.load(fh)
        for r in d.get("runs", []):
            r["_file"] = os.path.basename(f)
            # WeMaster on S3 apart (nginx and WeMaster on local storage side by side).
            store = "s3" if r.get("storage") == "s3" else "local"
            by_poll.setdefault((r.get("poll_ms"), r.get("record", False), store), []).append(r)
    for (poll, record, store), runs in sorted(by_poll.items(), key=lambda x: (x[0][0] or 0, x[0][1], x[0][2])):
        sel = select_runs(runs, noise_max)
        dropped = len([r for r in runs if "error" not in r]) - len(sel)
        print(f"\nplaylist poll every {poll:g} ms, recording {'on' if record else 'off'}"
              f"{', WeMaster on S3' if store == 's3' else ''}: {len(sel)} runs "
              f"({dropped} noisy runs left out) from {sorted({r['_file'] for r in runs})}\n")
        print_table(summarize(sel))
        if record:
            print_summary({"summary": {}, "recording_summary": recording_rows(sel)})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True)
    ap.add_argument("--wemaster-bin", required=True)
    ap.add_argument("--pipelines-dir", required=True)
    ap.add_argument("--nginx-module", default="/usr/lib/nginx/modules/ngx_rtmp_module.so")
    ap.add_argument("--email", required=True)
    ap.add_argument("--password", default=os.environ.get("WEMASTER_ADMIN_PASSWORD"),
                    help="default: $WEMASTER_ADMIN_PASSWORD")
    ap.add_argument("--streams", default="1 5 10 20")
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--skip", type=float, default=10)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--runs-max-n", type=int, default=3, help="runs for the largest N")
    ap.add_argument("--servers", default="wemaster nginx")
    ap.add_argument("--poll-ms", type=float, default=50)
    ap.add_argument("--quiet-wait", type=float, default=900)
    ap.add_argument("--quiet-busy", type=float, default=0.25,
                    help="machine busy fraction under which it counts as quiet")
    ap.add_argument("--noise-max", type=float, default=0.3,
                    help="CPU (cores) other processes may use during a run before it counts as noisy")
    ap.add_argument("--noise-retries", type=int, default=2)
    ap.add_argument("--summarize", nargs="+", metavar="RESULTS_JSON",
                    help="only print the table of these result files' runs merged (grouped by poll interval)")
    ap.add_argument("--profile", choices=["yes", "no", "only"], default="yes")
    ap.add_argument("--profile-n", type=int, default=10)
    ap.add_argument("--profile-seconds", type=float, default=20)
    ap.add_argument("--profile-servers", default="wemaster nginx")
    ap.add_argument("--perf-callgraph", choices=["fp", "dwarf"], default="fp",
                    help="perf record -g (frame pointers) or --call-graph dwarf (slower, deeper)")
    ap.add_argument("--record", default="no",
                    help="recording modes run (\"no\", \"yes\" or \"no yes\"): WeMaster streams with "
                         "record false/true, nginx with record off / record all (FLV)")
    ap.add_argument("--storage", choices=["local", "s3"], default="local",
                    help="WeMaster's storage backend (s3: a private s3s-fs per run)")
    ap.add_argument("--s3s-fs", default=os.path.expanduser("~/.cargo/bin/s3s-fs"))
    ap.add_argument("--ready-timeout", type=float, default=180,
                    help="seconds to wait for every recording to be ready after the stop")
    ap.add_argument("--ready-poll-ms", type=float, default=50)
    ap.add_argument("--results-dir", required=True)
    ap.add_argument("--wemaster-ports", default=None, metavar="RTMP,HTTP",
                    help="fixed ports for WeMaster (default: free ones per run)")
    ap.add_argument("--nginx-ports", default=None, metavar="RTMP,HTTP",
                    help="fixed ports for nginx (default: free ones per run)")
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--meta", default="{}", help="JSON merged into the results' machine block")
    if "--summarize" in sys.argv:
        # The table of earlier results, merged; no servers needed.
        i = sys.argv.index("--summarize")
        files = [a for a in sys.argv[i + 1:] if not a.startswith("--")]
        noise_max = 0.3
        if "--noise-max" in sys.argv:
            noise_max = float(sys.argv[sys.argv.index("--noise-max") + 1])
        summarize_files(files, noise_max)
        return
    args = ap.parse_args()
    args.profile_servers = args.profile_servers.split()
    args.record_modes = [m == "yes" for m in args.record.replace(",", " ").split()]
    if not args.record_modes or any(m not in ("yes", "no") for m in args.record.replace(",", " ").split()):
        ap.error("--record: \"no\", \"yes\" or \"no yes\"")
    args.perf_suffix = "" if args.perf_callgraph == "fp" else "-dwarf"
    os.makedirs(args.results_dir, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_path = f"{args.results_dir}/rtmp-hls-{stamp}.json"

    ns = [int(x) for x in args.streams.replace(",", " ").split()]
    servers = args.servers.split()
    doc = {
        "benchmark": "rtmp-hls",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": {k: v for k, v in vars(args).items() if k != "password"},
        "machine": json.loads(args.meta),
        "runs": [],
    }
    try:
        doc["versions"] = {"wemaster": Wemaster(args, "/").version(), "nginx": Nginx(args, "/").version()}
    except Exception as e:  # noqa: BLE001
        doc["versions"] = {"error": str(e)}

    def save():
        with open(out_path + ".tmp", "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(out_path + ".tmp", out_path)

    if args.profile != "only":
        # Interleave servers and repetitions so slow drifts of the shared machine hit both alike.
        max_n = max(ns)
        for n in ns:
            reps = args.runs_max_n if n == max_n and args.runs_max_n > args.runs else args.runs
            for rep in range(reps):
              for record in args.record_modes:
                order = servers if rep % 2 == 0 else list(reversed(servers))
                for kind in order:
                    # A run during which other processes used the machine is kept but marked
                    # noisy, and done again (at most --noise-retries times).
                    for attempt in range(1 + args.noise_retries):
                        try:
                            r = run_one(args, kind, n, rep, record)
                        except Exception as e:  # noqa: BLE001
                            log(f"run failed: {kind} N={n} rep={rep} record={record}: {e}")
                            doc["runs"].append({"server": kind, "n": n, "rep": rep, "record": record,
                                                "error": str(e)})
                            save()
                            break
                        r["attempt"] = attempt
                        doc["runs"].append(r)
                        save()
                        if not r["noisy"]:
                            break
                        log(f"  noisy run (other processes used {r['other_cpu_cores']:.2f} cores)"
                            + (": again" if attempt < args.noise_retries else ": kept, marked noisy"))
        sel = select_runs(doc["runs"], args.noise_max)
        doc["summary"] = {("record" if m else "no_record"): summarize([r for r in sel if r.get("record", False) == m])
                          for m in args.record_modes}
        doc["recording_summary"] = recording_rows(sel)
        save()
    if args.profile != "no":
        doc["profile"] = profile(args)
        save()
    doc["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    save()
    if doc.get("summary"):
        print_summary(doc)
    print(f"\nresults: {out_path}")


if __name__ == "__main__":
    main()
