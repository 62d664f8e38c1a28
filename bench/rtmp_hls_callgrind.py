#!/usr/bin/env python3
"""Instruction counts of WeMaster's live path: `wemaster serve` under callgrind, N ffmpeg -re
publishers, every playlist polled (as bench/rtmp_hls.py does), counted over a steady window.

Wall-clock CPU on a shared 2-core machine moves with other people's builds; instruction counts
(Ir) do not. The server runs under `valgrind --tool=callgrind --instr-atstart=no`; after
--warmup seconds collection is switched on with `callgrind_control -i on`, after --window
seconds the counts are dumped. Reported: Ir per stream per second of media (the window is
paced by ffmpeg -re, so the work in it is fixed by the input), the number of playlist requests
and segments in the window, and the top inclusive/self functions (callgrind_annotate).

Kernel work (syscalls, TCP, page cache) is not counted by callgrind: count the syscalls with
--strace (strace -c -f over the same kind of window, no valgrind) to compare those.

Driven by bench/rtmp-hls.sh --callgrind (which prepares PostgreSQL, Redis, the user, the input
and the binary, and passes them on). Standard library only.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtmp_hls  # noqa: E402
from rtmp_hls import Poller, Publisher, Wemaster, log  # noqa: E402


def wrapper(workdir, args, out_file):
    """A script that execs the server under the tool (same pid, so pids()/signals still work)."""
    path = f"{workdir}/under-tool.sh"
    if args.tool == "callgrind":
        cmd = (f'exec valgrind --tool=callgrind --instr-atstart=no --dump-instr=no '
               f'--callgrind-out-file={out_file} {args.valgrind_opts} {args.wemaster_bin} "$@"')
    else:
        cmd = f'exec {args.wemaster_bin} "$@"'
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\n{cmd}\n")
    os.chmod(path, 0o755)
    return path


def annotate(out_file, inclusive, n=40):
    r = subprocess.run(["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}",
                        "--threshold=100", out_file], capture_output=True, text=True)
    lines = []
    total = None
    for line in r.stdout.splitlines():
        m = re.match(r"^\s*([\d,]+) \(\s*([\d.]+)%\)\s+(.*)$", line)
        if m:
            lines.append((int(m.group(1).replace(",", "")), float(m.group(2)), m.group(3)))
        m = re.match(r"^\s*([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", line)
        if m:
            total = int(m.group(1).replace(",", ""))
    return total, lines[:n]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True)
    ap.add_argument("--wemaster-bin", required=True)
    ap.add_argument("--pipelines-dir", required=True)
    ap.add_argument("--email", required=True)
    ap.add_argument("--password", default=os.environ.get("WEMASTER_ADMIN_PASSWORD"))
    ap.add_argument("--streams", type=int, default=1)
    ap.add_argument("--poll-ms", type=float, default=50)
    ap.add_argument("--warmup", type=float, default=12, help="seconds before counting starts")
    ap.add_argument("--window", type=float, default=20, help="seconds counted")
    ap.add_argument("--tool", choices=["callgrind", "strace", "none"], default="callgrind")
    ap.add_argument("--valgrind-opts", default="")
    ap.add_argument("--label", default="")
    ap.add_argument("--results-dir", required=True)
    ap.add_argument("--ports", default="", help="RTMP,HTTP ports (default: free ones)")
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    args.storage = "local"
    args.s3s_fs = ""
    os.makedirs(args.results_dir, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    label = f"-{args.label}" if args.label else ""
    out_file = os.path.abspath(f"{args.results_dir}/callgrind-live-n{args.streams}{label}-{stamp}.out")

    workdir = tempfile.mkdtemp(prefix="wm-callgrind-", dir=args.tmp)
    real_bin = args.wemaster_bin
    args.wemaster_bin = wrapper(workdir, args, out_file)
    server = Wemaster(args, workdir)
    if args.ports:
        server.rtmp_port, server.http_port = (int(p) for p in args.ports.split(","))
    pubs, pollers = [], []
    stop = threading.Event()
    report = {}
    try:
        log(f"callgrind: wemaster ({real_bin}) N={args.streams} poll {args.poll_ms} ms, "
            f"warm-up {args.warmup} s, window {args.window} s (dir {workdir})")
        server.start()
        server.prepare(args.streams)
        pid = server.proc.pid
        for i in range(args.streams):
            pubs.append(Publisher(args, server.publish_url(i)))
        for i in range(args.streams):
            p = Poller(*server.playlist(i), args.poll_ms / 1000.0, stop)
            p.start()
            pollers.append(p)
        time.sleep(args.warmup)
        req0 = sum(p.requests for p in pollers)
        seg0 = sum(len(p.seen) for p in pollers)
        ticks0 = rtmp_hls.cpu_ticks([pid])
        strace = None
        if args.tool == "callgrind":
            subprocess.run(["callgrind_control", "-i", "on", str(pid)], check=True,
                           capture_output=True)
        elif args.tool == "strace":
            strace_out = out_file.replace(".out", ".strace")
            strace = subprocess.Popen(["strace", "-c", "-f", "-o", strace_out, "-p", str(pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        time.sleep(args.window)
        if args.tool == "callgrind":
            subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
            subprocess.run(["callgrind_control", "-i", "off", str(pid)], capture_output=True)
        elif strace:
            strace.send_signal(2)
            strace.wait(10)
        wall = time.monotonic() - t0
        ticks = rtmp_hls.cpu_ticks([pid]) - ticks0
        requests = sum(p.requests for p in pollers) - req0
        segments = sum(len(p.seen) for p in pollers) - seg0
        report = {"wall_s": round(wall, 2), "requests": requests, "segments": segments,
                  "server_cpu_cores": round(ticks / rtmp_hls.CLK_TCK / wall, 3),
                  "publishers_alive": sum(1 for p in pubs if p.proc.poll() is None)}
    finally:
        stop.set()
        for p in pollers:
            p.join(5)
        for pr in [p.stop() for p in pubs]:
            try:
                pr.wait(10)
            except subprocess.TimeoutExpired:
                pr.kill()
        server.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n{args.label or 'run'}: N={args.streams}, window {report['wall_s']} s, "
          f"{report['requests']} playlist requests, {report['segments']} segments listed, "
          f"server CPU {report['server_cpu_cores']} cores (under the tool), "
          f"{report['publishers_alive']}/{args.streams} publishers alive at the end")
    if args.tool == "callgrind":
        # The dump made by `callgrind_control -d` is <out>.1 (the final one at exit is <out>).
        dump = f"{out_file}.1" if os.path.exists(f"{out_file}.1") else out_file
        total, incl = annotate(dump, True)
        _, excl = annotate(dump, False)
        if total:
            per = total / args.streams / report["wall_s"]
            print(f"Ir total {total:,}; per stream per second {per / 1e6:,.2f} M")
        print("\ninclusive:")
        for ir, pct, name in incl:
            print(f"  {pct:5.1f}%  {ir / 1e6:10.1f} M  {name[:150]}")
        print("\nself:")
        for ir, pct, name in excl:
            print(f"  {pct:5.1f}%  {ir / 1e6:10.1f} M  {name[:150]}")
        print(f"\ncallgrind output: {dump}")
    elif args.tool == "strace":
        print(open(out_file.replace(".out", ".strace")).read())


if __name__ == "__main__":
    main()
