#!/usr/bin/env bash
# Memory under a burst of password logins: what a login storm (or a fuzzer's) leaves behind.
#
#   bench/login-memory.sh                          # 400 logins, 64 at once, 3 runs, release build
#   bench/login-memory.sh --debug --runs 1         # a smoke run with the debug binary, unbuilt
#
# Options (each also settable by environment variable, in brackets):
#   --logins 400     [BENCH_LOGINS]       password logins per run (each one argon2id, 19 MiB)
#   --concurrency 64 [BENCH_CONCURRENCY]  of them at once
#   --runs 3         [BENCH_RUNS]         runs (a fresh server each)
#   --port 18491     [BENCH_PORT]         the server's HTTP port
#   --no-build                            use the existing release binary
#   --debug                               use the debug binary, unbuilt
#
# What it does: starts a private PostgreSQL ($WEMASTER_PG_PORT, default 29492: below the ephemeral port range, so no outgoing connection holds it) and Redis
# ($WEMASTER_REDIS_PORT, default 29493), creates one account, then per run starts
# `wemaster serve`, reads its resident memory (VmRSS) when ready, fires the logins with curl
# (xargs -P), reads VmRSS at the end of the burst and again after 10 s idle, and stops it.
# A flat "after idle" is the goal: memory a burst takes must come back. Results are printed as
# a table of medians; see docs/benchmarks.md ("Memory after a login burst").
set -euo pipefail

: "${WEMASTER_PG_PORT:=29492}"
: "${WEMASTER_REDIS_PORT:=29493}"
export WEMASTER_PG_PORT WEMASTER_REDIS_PORT
# shellcheck source=../scripts/lib.sh
source "$(dirname "$0")/../scripts/lib.sh"
BENCH="$ROOT/bench"
DATA="$BENCH/.cache/login-data"
cd "$ROOT"

LOGINS=${BENCH_LOGINS:-400}
CONCURRENCY=${BENCH_CONCURRENCY:-64}
RUNS=${BENCH_RUNS:-3}
PORT=${BENCH_PORT:-18491}
BUILD=1
PROFILE_DIR=release
while [ $# -gt 0 ]; do
  case "$1" in
    --logins) LOGINS=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --debug) BUILD=0; PROFILE_DIR=debug; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN="$TARGET/$PROFILE_DIR/wemaster"
if [ "$BUILD" = 1 ]; then
  log "building wemaster (release)"
  cargo build --release -p wemaster
fi
[ -x "$BIN" ] || die "missing $BIN (build it, or drop --no-build)"

pg_was_up=0; redis_was_up=0
pg_run "$(pg_bin)/pg_ctl" -D "$(pg_data_dir)" status >/dev/null 2>&1 && pg_was_up=1
redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && redis_was_up=1
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  [ "$redis_was_up" = 1 ] || redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  [ "$pg_was_up" = 1 ] || pg_run "$(pg_bin)/pg_ctl" -D "$(pg_data_dir)" -m fast stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
start_private_postgres
ensure_database wemaster_loginbench
export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/wemaster_loginbench"
start_private_redis
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
export WEMASTER__AUTH__KEYS_DIR="$DATA/keys"
"$BIN" migrate >/dev/null
WEMASTER_ADMIN_PASSWORD=$(cat "$(secret_file login-bench-password)")
export WEMASTER_ADMIN_PASSWORD
EMAIL=bench-login@bench.example
if ! out=$("$BIN" admin create-user --email "$EMAIL" --role student 2>&1); then
  grep -qi "exist" <<<"$out" || die "cannot create $EMAIL: $out"
fi
BODY=$(python3 -c 'import json,sys; print(json.dumps({"email": sys.argv[1], "password": sys.argv[2]}))' \
  "$EMAIL" "$WEMASTER_ADMIN_PASSWORD")

rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

mkdir -p "$DATA/run"
log "machine: $(nproc) CPUs; commit $(git rev-parse --short HEAD); $LOGINS logins, $CONCURRENCY at once"
rows=()
for run in $(seq 1 "$RUNS"); do
  WEMASTER__HTTP__LISTEN="127.0.0.1:$PORT" \
  WEMASTER__HTTP__PUBLIC_URL="http://127.0.0.1:$PORT" \
  WEMASTER__RTMP__LISTEN=127.0.0.1:0 \
  WEMASTER__WHIP__UDP_LISTEN=127.0.0.1:0 \
  WEMASTER__STORAGE__LOCAL__ROOT="$DATA/run/objects" \
  WEMASTER__MEDIA__SPOOL_DIR="$DATA/run/spool" \
  WEMASTER__MEDIA__PIPELINES_DIR="$ROOT/pipelines" \
  WEMASTER__AUTH__LIMITS__KEY_PREFIX="wm:rl:loginbench-$run-$$:" \
  RUST_LOG=warn \
    "$BIN" serve > "$DATA/run/server-$run.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 300); do
    curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null || die "server not ready (see $DATA/run/server-$run.log)"
  sleep 1
  ready=$(rss_mib "$SERVER_PID")
  start=$(date +%s.%N)
  codes=$(seq "$LOGINS" | xargs -P "$CONCURRENCY" -I{} curl -s -o /dev/null -w '%{http_code}\n' \
    -H 'Content-Type: application/json' --data "$BODY" "http://127.0.0.1:$PORT/api/v1/auth/login" \
    | sort | uniq -c | tr -s ' ' | tr '\n' ',')
  secs=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
  burst=$(rss_mib "$SERVER_PID")
  sleep 10
  idle=$(rss_mib "$SERVER_PID")
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  log "run $run: ready $ready MiB, after the burst $burst MiB, 10 s later $idle MiB; $secs s; answers:$codes"
  rows+=("$ready $burst $idle $secs")
done
printf '%s\n' "${rows[@]}" | python3 -c '
import statistics, sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
med = lambda i: statistics.median(r[i] for r in rows)
print(f"median of {len(rows)} run(s): ready {med(0):.1f} MiB, after the burst {med(1):.1f} MiB, "
      f"10 s later {med(2):.1f} MiB, burst {med(3):.1f} s")'
