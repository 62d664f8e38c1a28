#!/usr/bin/env bash
# Chat benchmark: N WebSocket connections, one big lesson room fed at a set rate, the rest idle.
#
#   bench/chat.sh                              # 10,000 connections, 2,000 in the room, 10 msg/s, 60 s, 3 runs
#   bench/chat.sh --connections 1000 --room-size 200 --duration 10 --runs 1    # smoke run
#   bench/chat.sh --perf yes                   # also perf record -g the server while it publishes
#   bench/chat.sh --scenario interaction       # 2,000 students: a poll answered within 5 s, 2 reactions/s each
#
# Options (each also settable by environment variable, in brackets):
#   --connections 10000 [BENCH_CONNECTIONS]  WebSocket connections (listeners; the publisher is one more)
#   --room-size 2000    [BENCH_ROOM_SIZE]    of them in the big room; the rest spread over
#   --other-rooms 40    [BENCH_OTHER_ROOMS]  idle lesson rooms
#   --rate 10           [BENCH_RATE]         messages per second into the big room
#   --duration 60       [BENCH_DURATION]     seconds of publishing
#   --runs 3            [BENCH_RUNS]         runs (a fresh server and course each)
#   --students 50       [BENCH_STUDENTS]     student accounts the connections are spread over
#   --port 18490        [BENCH_PORT]         the server's HTTP port
#   --perf no|yes       [BENCH_PERF]         perf record -g (99 Hz) of the server during the first run's publishing
#   --scenario chat|interaction [BENCH_SCENARIO] chat: the room fed at --rate; interaction: --students
#                                            students (default 2000 there), one connection each, answer a
#                                            poll within 5 s and react 2/s for --duration s (default 20)
#                                            (bench/chat-load/src/bin/interaction-load.rs; docs/interaction.md)
#   --no-build                               use the existing release binaries
#   --bin PATH                               the wemaster binary to measure (implies --no-build)
#   --deflate no|yes    [BENCH_DEFLATE]      the clients offer permessage-deflate, as browsers do
#   --debug                                  use the debug binaries, unbuilt (a smoke run of the tool)
#
# What it does: builds `wemaster` and `chat-load` (release, one cargo invocation so they share
# dependency builds), raises the open-file limit (ulimit -n: 10,000 sockets on each side),
# starts a private PostgreSQL ($WEMASTER_PG_PORT, default 55491) and Redis ($WEMASTER_REDIS_PORT,
# default 56491) with their files under bench/.cache/chat-data, creates the teacher and the
# students with `wemaster admin create-user`, then per run starts `wemaster serve` with the chat
# limits the load needs (below), runs chat-load against it and stops it. Results:
# bench/results/chat-<time>-<run>.json and a table of medians; see docs/benchmarks.md ("Chat").
set -euo pipefail

: "${WEMASTER_PG_PORT:=55491}"
: "${WEMASTER_REDIS_PORT:=56491}"
export WEMASTER_PG_PORT WEMASTER_REDIS_PORT
# shellcheck source=../scripts/lib.sh
source "$(dirname "$0")/../scripts/lib.sh"
BENCH="$ROOT/bench"
DATA="$BENCH/.cache/chat-data"
cd "$ROOT"

CONNECTIONS=${BENCH_CONNECTIONS:-10000}
ROOM_SIZE=${BENCH_ROOM_SIZE:-2000}
OTHER_ROOMS=${BENCH_OTHER_ROOMS:-40}
RATE=${BENCH_RATE:-10}
DURATION=${BENCH_DURATION:-60}
RUNS=${BENCH_RUNS:-3}
STUDENTS=${BENCH_STUDENTS:-50}
PORT=${BENCH_PORT:-18490}
PERF=${BENCH_PERF:-no}
DEFLATE=${BENCH_DEFLATE:-no}
BIN_OVERRIDE=
SCENARIO=${BENCH_SCENARIO:-chat}
BUILD=1
PROFILE_DIR=release
while [ $# -gt 0 ]; do
  case "$1" in
    --connections) CONNECTIONS=$2; shift 2 ;;
    --room-size) ROOM_SIZE=$2; shift 2 ;;
    --other-rooms) OTHER_ROOMS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --students) STUDENTS=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --perf) PERF=$2; shift 2 ;;
    --scenario) SCENARIO=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --bin) BIN_OVERRIDE=$2; BUILD=0; shift 2 ;;
    --deflate) DEFLATE=$2; shift 2 ;;
    --debug) BUILD=0; PROFILE_DIR=debug; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

case "$SCENARIO" in
  chat) ;;
  interaction)
    # One account and one connection per student, unless set.
    [ -n "${BENCH_STUDENTS:-}" ] || grep -q -- '--students' <<<"$*" || STUDENTS=2000
    [ -n "${BENCH_DURATION:-}" ] || DURATION=20
    CONNECTIONS=$STUDENTS ;;
  *) die "unknown scenario: $SCENARIO (chat or interaction)" ;;
esac

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${BIN_OVERRIDE:-$TARGET/$PROFILE_DIR/wemaster}
LOAD="$TARGET/$PROFILE_DIR/chat-load"
[ "$SCENARIO" = interaction ] && LOAD="$TARGET/$PROFILE_DIR/interaction-load"
if [ "$BUILD" = 1 ]; then
  log "building wemaster and chat-load (release)"
  cargo build --release -p wemaster -p wemaster-chat-load
fi
[ -x "$BIN" ] && [ -x "$LOAD" ] || die "missing $BIN or $LOAD (build them, or drop --no-build)"
case "$DEFLATE" in
  yes) export BENCH_DEFLATE=1 ;;
  no) export BENCH_DEFLATE=0 ;;
  *) die "--deflate: yes or no" ;;
esac

# Each side holds one socket per connection, plus files, PostgreSQL and Redis connections.
want=$((CONNECTIONS + 500))
hard=$(ulimit -Hn)
# Root may raise its own hard limit where the container allows it (this one stops at 20,000).
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ] && ulimit -Hn "$want" 2>/dev/null; then
  hard=$want
fi
[ "$hard" != unlimited ] && [ "$hard" -lt "$want" ] && die "ulimit -Hn is $hard; $want needed"
ulimit -n "$want"

# --- PostgreSQL, Redis, users ----------------------------------------------------------------
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
ensure_database wemaster_chatbench
export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/wemaster_chatbench"
start_private_redis
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
export WEMASTER__AUTH__KEYS_DIR="$DATA/keys"
"$BIN" migrate >/dev/null
PASSWORD_FILE=$(secret_file chat-bench-password)
export WEMASTER_ADMIN_PASSWORD BENCH_PASSWORD
WEMASTER_ADMIN_PASSWORD=$(cat "$PASSWORD_FILE"); BENCH_PASSWORD=$WEMASTER_ADMIN_PASSWORD
TEACHER=bench-teacher@bench.example
create_user() {
  local out
  if ! out=$("$BIN" admin create-user --email "$1" --role "$2" 2>&1); then
    grep -qi "exist" <<<"$out" || die "cannot create $1: $out"
  fi
}
have=$(psql "$DATABASE_URL" -tAc "SELECT count(*) FROM users WHERE email LIKE 'bench-%@bench.example'")
if [ "$have" -lt $((STUDENTS + 1)) ]; then
  log "creating the teacher and $STUDENTS students"
  create_user "$TEACHER" teacher
  create_user "bench-student-0@bench.example" student
  # The others share the first student's password hash (the same password): one argon2 hash
  # instead of thousands, for bench accounts only.
  psql "$DATABASE_URL" -qc "INSERT INTO users (id, email, display_name, password_hash, roles, email_verified_at)
    SELECT gen_random_uuid(), 'bench-student-' || i || '@bench.example', 'Student ' || i, t.password_hash,
           ARRAY['student'], now()
    FROM generate_series(1, $((STUDENTS - 1))) i,
         (SELECT password_hash FROM users WHERE email = 'bench-student-0@bench.example') t
    ON CONFLICT DO NOTHING"
fi

# --- runs --------------------------------------------------------------------------------------
mkdir -p "$BENCH/results" "$DATA/run"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
commit=$(git rev-parse --short HEAD)
log "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); commit $commit"
results=()
for run in $(seq 1 "$RUNS"); do
  log "run $run/$RUNS: load now $(cut -d' ' -f1-3 /proc/loadavg)"
  # The chat limits this load needs (the defaults suit people, not a load generator):
  # connections per user (CONNECTIONS / STUDENTS of them) and the publisher's message rate.
  WEMASTER__HTTP__LISTEN="127.0.0.1:$PORT" \
  WEMASTER__HTTP__PUBLIC_URL="http://127.0.0.1:$PORT" \
  WEMASTER__RTMP__LISTEN=127.0.0.1:0 \
  WEMASTER__WHIP__UDP_LISTEN=127.0.0.1:0 \
  WEMASTER__STORAGE__LOCAL__ROOT="$DATA/run/objects" \
  WEMASTER__MEDIA__SPOOL_DIR="$DATA/run/spool" \
  WEMASTER__MEDIA__PIPELINES_DIR="$ROOT/pipelines" \
  WEMASTER__CHAT__KEY_PREFIX="wm:chatbench:$stamp-$run:" \
  WEMASTER__CHAT__MAX_CONNECTIONS_PER_USER=$((CONNECTIONS / STUDENTS + 10)) \
  WEMASTER__CHAT__MESSAGES_PER_10S=$((${RATE%.*} * 20 + 100)) \
  WEMASTER__DATABASE__MAX_CONNECTIONS=32 \
  WEMASTER__HTTP__MAX_CONNECTIONS=$((CONNECTIONS + 200)) \
  RUST_LOG=warn \
    "$BIN" serve > "$DATA/run/server-$run.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 300); do
    curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null || die "server not ready (see $DATA/run/server-$run.log)"
  perf_pid=""
  if [ "$PERF" = yes ] && [ "$run" = 1 ]; then
    # Started late enough to cover publishing: setup + connections + idle take a while, so
    # record for the whole run and look at the publishing part in the report.
    perf record -F 99 -g -p "$SERVER_PID" -o "$DATA/run/perf.data" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  out="$BENCH/results/$SCENARIO-$stamp-$run.json"
  if [ "$SCENARIO" = interaction ]; then
    "$LOAD" --url "http://127.0.0.1:$PORT" --teacher-email "$TEACHER" --students "$STUDENTS" \
      --duration-s "$DURATION" --server-pid "$SERVER_PID" --out "$out" >/dev/null
  else
    "$LOAD" --url "http://127.0.0.1:$PORT" --teacher-email "$TEACHER" --students "$STUDENTS" \
      --connections "$CONNECTIONS" --room-size "$ROOM_SIZE" --other-rooms "$OTHER_ROOMS" \
      --rate "$RATE" --duration-s "$DURATION" --server-pid "$SERVER_PID" --out "$out" >/dev/null
  fi
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid"; wait "$perf_pid" || true
    perf report -i "$DATA/run/perf.data" --no-children --percent-limit 1.5 --stdio 2>/dev/null \
      | grep -v '^$' | head -n 80 > "$BENCH/results/chat-$stamp-perf.txt" || true
    log "perf report: bench/results/chat-$stamp-perf.txt"
  fi
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  results+=("$out")
  python3 - "$out" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
if "answers" in r:
    a, d, x = r["answers"], r["aggregate_delay_ms"], r["reactions"]
    print("  %d students, answers acked %d, final tally %s %s (expected %s), aggregate delay p50 %.0f ms p99 %.0f ms, "
          "reactions counted %d heard %d-%d, %d frames/s max per listener, cpu %.0f%%"
          % (r["students"], a["acked"], a["final_answered"], a["final_counts"], a["expected_counts"], d["p50"], d["p99"],
             x["counted_by_server"], x["heard_min"], x["heard_max"], x["frames_per_listener_per_s_max"], r["server"]["cpu_pct"]))
    sys.exit(0)
l = r["latency_ms"]; s = r["server"]
print("  %d conns, %d closed early, p50 %s ms, p99 %s ms, max %s ms, lost %d, dup %d, cpu %.0f%%, %.1f KiB/conn"
      % (r["connections"] - r["failed"], r["closed_early"], l["p50"], l["p99"], l["max"], r["lost"],
         r["duplicated"], s["cpu_publish_pct"], s["rss_per_connection_kib"]))
EOF
done

python3 - "${results[@]}" <<'EOF'
import json, statistics, sys
rs = [json.load(open(p)) for p in sys.argv[1:]]
def med(f):
    v = [f(r) for r in rs]
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else float("nan")
print(f"median of {len(rs)} run(s):")
if "answers" in rs[0]:
    rows = [
        ("students connected", lambda r: r["students"] - r["connections_failed"], "{:.0f}"),
        ("answers acked", lambda r: r["answers"]["acked"], "{:.0f}"),
        ("teacher's final tally (answered)", lambda r: r["answers"]["final_answered"], "{:.0f}"),
        ("tally = expected per option (runs)", lambda r: float(r["answers"]["final_counts"] == r["answers"]["expected_counts"]), "{:.0f}"),
        ("aggregate delay p50 (ms)", lambda r: r["aggregate_delay_ms"]["p50"], "{:.0f}"),
        ("aggregate delay p99 (ms)", lambda r: r["aggregate_delay_ms"]["p99"], "{:.0f}"),
        ("aggregate delay max (ms)", lambda r: r["aggregate_delay_ms"]["max"], "{:.0f}"),
        ("reactions counted by the server", lambda r: r["reactions"]["counted_by_server"], "{:.0f}"),
        ("reactions heard by a listener (min)", lambda r: r["reactions"]["heard_min"], "{:.0f}"),
        ("reactions heard by a listener (max)", lambda r: r["reactions"]["heard_max"], "{:.0f}"),
        ("reactions frames per listener per s (max)", lambda r: r["reactions"]["frames_per_listener_per_s_max"], "{:.0f}"),
        ("reactions frames per listener per s (mean)", lambda r: r["reactions"]["frames_per_listener_per_s_mean"], "{:.2f}"),
        ("errors", lambda r: r["reactions"]["errors"], "{:.0f}"),
        ("closed early", lambda r: r["closed_early"], "{:.0f}"),
        ("server CPU (% of a core)", lambda r: r["server"]["cpu_pct"], "{:.1f}"),
        ("server RSS (MiB)", lambda r: r["server"]["rss_mib"], "{:.0f}"),
    ]
    for name, f, fmt in rows:
        print(f"  {name:44s} {fmt.format(med(f))}")
    sys.exit(0)
rows = [
    ("connections open", lambda r: r["connections"] - r["failed"], "{:.0f}"),
    ("open time (s)", lambda r: r["open_s"], "{:.1f}"),
    ("messages acked / published", lambda r: r["acked"], "{:.0f}"),
    ("deliveries / expected", lambda r: r["deliveries"], "{:.0f}"),
    ("latency p50 (ms)", lambda r: r["latency_ms"]["p50"], "{:.1f}"),
    ("latency p99 (ms)", lambda r: r["latency_ms"]["p99"], "{:.1f}"),
    ("latency max (ms)", lambda r: r["latency_ms"]["max"], "{:.1f}"),
    ("lost", lambda r: r["lost"], "{:.0f}"),
    ("duplicated", lambda r: r["duplicated"], "{:.0f}"),
    ("out of order", lambda r: r["out_of_order"], "{:.0f}"),
    ("closed early", lambda r: r["closed_early"], "{:.0f}"),
    ("server CPU idle (% of a core)", lambda r: r["server"]["cpu_idle_pct"], "{:.1f}"),
    ("server CPU publishing (% of a core)", lambda r: r["server"]["cpu_publish_pct"], "{:.1f}"),
    ("server RSS open (MiB)", lambda r: r["server"]["rss_open_mib"], "{:.0f}"),
    ("server RSS per connection (KiB)", lambda r: r["server"]["rss_per_connection_kib"], "{:.1f}"),
]
for name, f, fmt in rows:
    print(f"  {name:40s} {fmt.format(med(f))}")
EOF
