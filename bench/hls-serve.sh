#!/usr/bin/env bash
# Live HLS serving: the live playlist and a 2 s segment (~720 KB) of a public stream, GET as fast
# as 32 connections go, from WeMaster (`/hls/live/<id>/…`: the view lookup, the viewer count,
# the cached playlist bytes or the segment file) and from nginx serving the same two files
# statically (sendfile on), on the same machine, interleaved. Prints one JSON line per run and
# case (requests/s, p99, WeMaster's CPU), then the medians and the WeMaster/nginx ratios.
# docs/benchmarks.md quotes them ("Live HLS serving").
#
#   bench/hls-serve.sh --bin target/release/wemaster [--runs 3] [--seconds 10]
#   bench/hls-serve.sh --bin … --runs 1 --perf /tmp/hls   # perf record (cpu-clock, call graphs)
#                          of WeMaster during its cases: /tmp/hls-playlist.data, /tmp/hls-segment.data
#
# The stream is published for a few seconds by ffmpeg (the benches' common input, copied) and
# then stopped: the playlist and segments stay served (the reconnect window, 60 s by default, is
# longer than the runs' total only when --runs × --seconds × 4 stays under it: the playlist is
# the live one while the window is open, the ended one after; both come from the same cached
# bytes). Private PostgreSQL/Redis under bench/.cache/data-hls (ports 55472/56422).
set -euo pipefail
: "${WEMASTER_PG_PORT:=55472}"
: "${WEMASTER_REDIS_PORT:=56422}"
export WEMASTER_PG_PORT WEMASTER_REDIS_PORT
source "$(dirname "$0")/../scripts/lib.sh"
DATA="$ROOT/bench/.cache/data-hls"
CACHE="$ROOT/bench/.cache"
cd "$ROOT"
BIN=""
RUNS=3
SECONDS_PER_RUN=10
OHA_VERSION=1.10.0
PERF=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
    --perf) PERF=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) die "unknown option $1" ;;
  esac
done
install_packages nginx ffmpeg
ensure_rust
export PATH="$HOME/.cargo/bin:$PATH"
command -v oha >/dev/null || cargo install oha --version "$OHA_VERSION" --locked
if [ -z "$BIN" ]; then
  build_web
  cargo build --release --locked --bin wemaster
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/wemaster"
fi
INPUT=$(bench_input "$CACHE")

mkdir -p "$DATA"
WORK=$(mktemp -d)
chmod 755 "$WORK"
pg_was_up=0; redis_was_up=0
pg_run "$(pg_bin)/pg_ctl" -D "$(pg_data_dir)" status >/dev/null 2>&1 && pg_was_up=1
redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && redis_was_up=1
SERVER_PID=""; NGINX_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null
  [ "$redis_was_up" = 1 ] || redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  [ "$pg_was_up" = 1 ] || pg_run "$(pg_bin)/pg_ctl" -D "$(pg_data_dir)" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
start_private_postgres
start_private_redis
WEMASTER_LOCAL_CONFIG="" bench_serve 18500 11965 wemaster_hlsbench "$WORK"
read -r STREAM KEY < <(bench_stream "HLS bench")
log "publishing 8 s to stream $STREAM"
timeout 8 ffmpeg -hide_banner -loglevel error -re -i "$INPUT" -c copy -f flv \
  "rtmp://127.0.0.1:11965/live/$KEY" || true
PLAYLIST_URL="http://127.0.0.1:18500/hls/live/$STREAM/index.m3u8"
curl -sf "$PLAYLIST_URL" >"$WORK/index.m3u8" || die "no playlist"
SEGMENT=$(grep -v '^#' "$WORK/index.m3u8" | head -n 1)
[ -n "$SEGMENT" ] || die "the playlist lists no segment"
SEGMENT_URL="http://127.0.0.1:18500/hls/live/$STREAM/$SEGMENT"
# nginx: the same two files, statically.
mkdir -p "$WORK/static/$(dirname "$SEGMENT")"
curl -sf "$SEGMENT_URL" -o "$WORK/static/$SEGMENT" || die "no segment"
cp "$WORK/index.m3u8" "$WORK/static/index.m3u8"
chmod -R a+rX "$WORK/static"
cat >"$WORK/nginx.conf" <<EOF
# One process that serves (no master): its CPU is what /proc/<pid> shows.
master_process off;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
  server {
    listen 127.0.0.1:18501;
    root $WORK/static;
  }
}
EOF
nginx -c "$WORK/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
sleep 0.5
NG_PLAYLIST="http://127.0.0.1:18501/index.m3u8"
NG_SEGMENT="http://127.0.0.1:18501/$SEGMENT"
for u in "$PLAYLIST_URL" "$SEGMENT_URL" "$NG_PLAYLIST" "$NG_SEGMENT"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$u")
  [ "$code" = 200 ] || die "$u answered $code"
done
log "segment $SEGMENT: $(stat -c %s "$WORK/static/$SEGMENT") bytes"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
load() {
  local case=$1 server=$2 url=$3 pid=$4 before after perf_pid=""
  if [ -n "$PERF" ] && [ "$server" = wemaster ]; then
    perf record -q -e cpu-clock -F 999 -g -p "$pid" -o "$PERF-$case.data" -- sleep "$SECONDS_PER_RUN" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  before=$(cpu_ticks "$pid")
  oha --no-tui --output-format json -z "${SECONDS_PER_RUN}s" -c 32 "$url" >"$WORK/oha.json"
  after=$(cpu_ticks "$pid")
  [ -z "$perf_pid" ] || wait "$perf_pid" || true
  python3 - "$WORK/oha.json" "$case" "$server" "$((after - before))" "$SECONDS_PER_RUN" "$(getconf CLK_TCK)" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
case, server, ticks, secs, hz = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
print(json.dumps({"case": case, "server": server, "rps": round(r["summary"]["requestsPerSec"], 1),
                  "p99_ms": round(r["latencyPercentiles"]["p99"] * 1000, 2),
                  "cpu_pct": round(100 * ticks / hz / secs, 1),
                  "status": r.get("statusCodeDistribution", {})}))
PY
}
for run in $(seq "$RUNS"); do
  log "run $run of $RUNS"
  load playlist wemaster "$PLAYLIST_URL" "$SERVER_PID"; load playlist nginx "$NG_PLAYLIST" "$NGINX_PID"
  load segment wemaster "$SEGMENT_URL" "$SERVER_PID"; load segment nginx "$NG_SEGMENT" "$NGINX_PID"
done | tee "$WORK/runs.jsonl"
python3 - "$WORK/runs.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for case in ("playlist", "segment"):
    med = {s: statistics.median(r["rps"] for r in rows if r["case"] == case and r["server"] == s)
           for s in ("wemaster", "nginx")}
    p99 = {s: statistics.median(r["p99_ms"] for r in rows if r["case"] == case and r["server"] == s)
           for s in ("wemaster", "nginx")}
    cpu = {s: statistics.median(r["cpu_pct"] for r in rows if r["case"] == case and r["server"] == s)
           for s in ("wemaster", "nginx")}
    # CPU per request: the servers use different numbers of threads on a machine shared with
    # the load tool, so requests/s alone favours whichever leaves oha more of the cores.
    us = {s: 1e4 * cpu[s] / med[s] for s in med}
    print(f"median of {len([r for r in rows if r['case'] == case]) // 2}: {case:8} WeMaster {med['wemaster']} req/s "
          f"(p99 {p99['wemaster']} ms, {cpu['wemaster']} % CPU, {us['wemaster']:.1f} µs/req), nginx {med['nginx']} req/s "
          f"(p99 {p99['nginx']} ms, {cpu['nginx']} % CPU, {us['nginx']:.1f} µs/req); "
          f"throughput ratio {med['wemaster'] / med['nginx']:.2f}, CPU per request ratio {us['wemaster'] / us['nginx']:.2f}")
PY
