#!/usr/bin/env bash
# Replay downloads: Range GETs of a 1 GiB recording MP4 served by WeMaster (local storage:
# `GET /hls/vod/<id>/recording.mp4`, its access check and a ranged read of the object) and by
# nginx serving the same file statically (sendfile on), on the same machine, interleaved.
# Cases: 1 MiB ranges at the middle of the file as fast as 16 connections go (oha: requests/s
# and MiB/s), and whole-file GETs (curl: MiB/s, 3 each). Prints one JSON line per run and case,
# then the medians and the WeMaster/nginx ratios. docs/benchmarks.md quotes them.
#
#   bench/replay-range.sh --bin target/release/wemaster [--runs 3] [--seconds 15]
#   bench/replay-range.sh --bin … --runs 1 --perf /tmp/replay.perf   # perf record (cpu-clock,
#                                             call graphs) of WeMaster during its range case
#
# Private PostgreSQL/Redis under bench/.cache/data-replay (ports 55462/56412).
set -euo pipefail
: "${WEMASTER_PG_PORT:=55462}"
: "${WEMASTER_REDIS_PORT:=56412}"
export WEMASTER_PG_PORT WEMASTER_REDIS_PORT
source "$(dirname "$0")/../scripts/lib.sh"
DATA="$ROOT/bench/.cache/data-replay"
cd "$ROOT"
BIN=""
RUNS=3
SECONDS_PER_RUN=15
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
install_packages nginx
ensure_rust
export PATH="$HOME/.cargo/bin:$PATH"
command -v oha >/dev/null || cargo install oha --version "$OHA_VERSION" --locked
if [ -z "$BIN" ]; then
  build_web
  cargo build --release --locked --bin wemaster
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/wemaster"
fi

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
WEMASTER_LOCAL_CONFIG="" bench_serve 18490 11955 wemaster_replaybench "$WORK"
read -r STREAM _ < <(bench_stream "Replay bench")
REC=$(python3 -c 'import uuid; print(uuid.uuid4())')
SIZE=$((1024 * 1024 * 1024))
mkdir -p "$WORK/objects/recordings/$REC"
log "writing a 1 GiB recording.mp4 (random bytes) for recording $REC"
head -c "$SIZE" /dev/urandom >"$WORK/objects/recordings/$REC/recording.mp4"
chmod -R a+rX "$WORK/objects"
psql "$DATABASE_URL" -qc "INSERT INTO recordings (id, live_stream_id, owner_id, session_id, status,
    visibility, started_at, ended_at, ready_at, duration_ms, size_bytes, mp4_size_bytes)
  SELECT '$REC', s.id, s.owner_id, gen_random_uuid(), 'ready', 'public', now() - interval '1 hour',
         now(), now(), 3600000, $SIZE, $SIZE FROM live_streams s WHERE s.id = '$STREAM'"

# nginx: the same directory, statically, on the same loopback.
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  server {
    listen 127.0.0.1:18491;
    root $WORK/objects;
  }
}
EOF
nginx -c "$WORK/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
sleep 0.5
WM="http://127.0.0.1:18490/hls/vod/$REC/recording.mp4"
NG="http://127.0.0.1:18491/recordings/$REC/recording.mp4"
for u in "$WM" "$NG"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Range: bytes=0-1' "$u")
  [ "$code" = 206 ] || die "$u answered $code to a Range request"
done
MID=$((SIZE / 2))
RANGE="bytes=$MID-$((MID + 1024 * 1024 - 1))"
# Warm the page cache for both (the same file): the runs then compare servers, not disks.
cat "$WORK/objects/recordings/$REC/recording.mp4" >/dev/null

ranges() {
  local server=$1 url=$2 perf_pid=""
  if [ -n "$PERF" ] && [ "$server" = wemaster ]; then
    perf record -q -e cpu-clock -F 999 -g -p "$SERVER_PID" -o "$PERF" -- sleep "$SECONDS_PER_RUN" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  oha --no-tui --output-format json -z "${SECONDS_PER_RUN}s" -c 16 -H "Range: $RANGE" "$url" >"$WORK/oha.json"
  python3 - "$WORK/oha.json" "$server" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["summary"]
codes = r.get("statusCodeDistribution", {})
print(json.dumps({"case": "range-1MiB", "server": sys.argv[2], "rps": round(s["requestsPerSec"], 1),
                  "mib_s": round(s["requestsPerSec"], 1), "p99_ms": round(r["latencyPercentiles"]["p99"] * 1000, 2),
                  "status": codes}))
PY
  [ -z "$perf_pid" ] || wait "$perf_pid"
}
whole() {
  local server=$1 url=$2 speeds=()
  for _ in 1 2 3; do speeds+=("$(curl -s -o /dev/null -w '%{speed_download}' "$url")"); done
  python3 -c 'import json,statistics,sys; v=[float(x)/2**20 for x in sys.argv[2:]]; print(json.dumps({"case":"whole-1GiB","server":sys.argv[1],"mib_s":round(statistics.median(v),1)}))' "$server" "${speeds[@]}"
}

for run in $(seq "$RUNS"); do
  log "run $run of $RUNS"
  ranges wemaster "$WM"; ranges nginx "$NG"
  whole wemaster "$WM"; whole nginx "$NG"
done | tee "$WORK/runs.jsonl"
python3 - "$WORK/runs.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for case in ("range-1MiB", "whole-1GiB"):
    med = {s: statistics.median(r["mib_s"] for r in rows if r["case"] == case and r["server"] == s)
           for s in ("wemaster", "nginx")}
    print(f"median of {len([r for r in rows if r['case'] == case]) // 2}: {case:11} WeMaster {med['wemaster']} MiB/s, "
          f"nginx {med['nginx']} MiB/s, ratio {med['wemaster'] / med['nginx']:.2f}")
PY
