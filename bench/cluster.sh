#!/usr/bin/env bash
# Scale-out benchmark: the same lesson load on one node and on three nodes behind HAProxy.
#
#   bench/cluster.sh                      # 3 runs each of 1 and 3 nodes, interleaved; release build
#   bench/cluster.sh --runs 1 --duration 20 --no-build     # a smoke run
#
# Load, the same for both (all through HAProxy, so only the number of nodes behind it differs):
# 20 RTMP publishers (ffmpeg -re -c copy of a 720p30 2.5 Mbit/s H.264 + AAC file, TCP-balanced
# leastconn), 2 HLS viewers per stream polling through the balancer (round robin: on 3 nodes,
# two requests in three are forwarded to the stream's node), 2,000 chat WebSocket connections
# (a room of 1,000 listeners at 10 messages/s, 20 idle rooms) from bench/chat-load.
# Reported per run: each node's CPU (% of one core) and RSS, the streams it held, HAProxy's CPU,
# chat latency/loss, HLS request latency/errors (bench/cluster_run.py); then medians per set-up.
#
# Options (environment variable in brackets):
#   --runs 3 [BENCH_RUNS]   --duration 60 [BENCH_DURATION]   --publishers 20 [BENCH_PUBLISHERS]
#   --chat 2000 [BENCH_CHAT]   --viewers 2 [BENCH_VIEWERS]   --nodes "1 3" [BENCH_NODES]
#   --record                record every stream (local object storage shared by the nodes)
#   --no-build              use the existing release binaries
#   --bin "A B"             compare wemaster binaries: each run of each set-up is made with each
#                           binary in turn (interleaved); implies --no-build for wemaster
# Private PostgreSQL (55493) and Redis (56493) under bench/.cache/cluster-data; HAProxy from
# Debian (installed when missing). Results: bench/results/cluster-<time>-<nodes>-<run>.json.
set -euo pipefail
: "${WEMASTER_PG_PORT:=55493}"
: "${WEMASTER_REDIS_PORT:=56493}"
export WEMASTER_PG_PORT WEMASTER_REDIS_PORT
# shellcheck source=../scripts/lib.sh
source "$(dirname "$0")/../scripts/lib.sh"
BENCH="$ROOT/bench"
DATA="$BENCH/.cache/cluster-data"
CACHE="$BENCH/.cache"
cd "$ROOT"

RUNS=${BENCH_RUNS:-3}
DURATION=${BENCH_DURATION:-60}
PUBLISHERS=${BENCH_PUBLISHERS:-20}
CHAT=${BENCH_CHAT:-2000}
VIEWERS=${BENCH_VIEWERS:-2}
NODES=${BENCH_NODES:-"1 3"}
STUDENTS=50
RECORD=()
BUILD=1
BINS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --publishers) PUBLISHERS=$2; shift 2 ;;
    --chat) CHAT=$2; shift 2 ;;
    --viewers) VIEWERS=$2; shift 2 ;;
    --nodes) NODES=$2; shift 2 ;;
    --record) RECORD=(--record); shift ;;
    --no-build) BUILD=0; shift ;;
    --bin) BINS=$2; BUILD=0; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

install_packages ffmpeg haproxy "${RUNTIME_PACKAGES[@]}"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "$BUILD" = 1 ]; then
  build_web
  log "building wemaster and chat-load (release)"
  cargo build --release --locked -p wemaster -p wemaster-chat-load
fi
# Private copies: the target dir is shared, someone may rebuild while we measure.
mkdir -p "$DATA"
for b in wemaster chat-load; do
  [ -x "$TARGET/release/$b" ] || die "missing $TARGET/release/$b (build it, or drop --no-build)"
  cp "$TARGET/release/$b" "$DATA/$b.tmp" && mv "$DATA/$b.tmp" "$DATA/$b"
done
BIN="$DATA/wemaster"
# The binaries the runs use ("label=path" each, or the one just copied).
VARIANTS=()
if [ -n "$BINS" ]; then
  i=0
  for b in $BINS; do
    [ -x "$b" ] || die "no binary $b"
    cp "$b" "$DATA/wemaster-$i" && VARIANTS+=("$i=$DATA/wemaster-$i")
    i=$((i + 1))
  done
else
  VARIANTS=("0=$BIN")
fi

# The input bench/rtmp-hls.sh uses (scripts/lib.sh), encoded once.
INPUT=$(bench_input "$CACHE")

# Each chat connection is a socket in chat-load, two in HAProxy and one in a node.
want=$((CHAT * 4 + 8000))
hard=$(ulimit -Hn)
[ "$hard" != unlimited ] && [ "$hard" -lt "$want" ] && die "ulimit -Hn is $hard; $want needed"
ulimit -n "$want"

pg_was_up=0; redis_was_up=0
pg_run "$(pg_bin)/pg_ctl" -D "$(pg_data_dir)" status >/dev/null 2>&1 && pg_was_up=1
redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && redis_was_up=1
cleanup() {
  [ "$redis_was_up" = 1 ] || redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  [ "$pg_was_up" = 1 ] || pg_run "$(pg_bin)/pg_ctl" -D "$(pg_data_dir)" -m fast stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
start_private_postgres
start_private_redis
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
export WEMASTER__AUTH__KEYS_DIR="$DATA/keys"
# Secrets every node must share (a playback token from one node is checked by another).
WEMASTER__PLAYBACK__SECRET=$(cat "$(secret_file cluster-bench-playback)")
export WEMASTER__PLAYBACK__SECRET
export WEMASTER_LOCAL_CONFIG=""
PASSWORD_FILE=$(secret_file cluster-bench-password)
export WEMASTER_ADMIN_PASSWORD BENCH_PASSWORD
WEMASTER_ADMIN_PASSWORD=$(cat "$PASSWORD_FILE"); BENCH_PASSWORD=$WEMASTER_ADMIN_PASSWORD
TEACHER=bench-teacher@bench.example

mkdir -p "$BENCH/results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
log "machine: $(nproc) CPUs; commit $(git rev-parse --short HEAD); $RUNS run(s) of: $NODES node(s)"
results=()
for run in $(seq "$RUNS"); do
  for n in $NODES; do
  for variant in "${VARIANTS[@]}"; do
    label=${variant%%=*}; BIN=${variant#*=}
    # A fresh database and Redis keys per run: nodes, streams and rooms of earlier runs gone.
    db=wemaster_clusterbench
    psql "$DATABASE_URL_ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
    export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/$db"
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
    "$BIN" migrate >/dev/null
    "$BIN" admin create-user --email "$TEACHER" --role teacher >/dev/null
    "$BIN" admin create-user --email bench-student-0@bench.example --role student >/dev/null
    # The other students share the first one's password hash (bench accounts only).
    psql "$DATABASE_URL" -qc "INSERT INTO users (id, email, display_name, password_hash, roles, email_verified_at)
      SELECT gen_random_uuid(), 'bench-student-' || i || '@bench.example', 'Student ' || i, t.password_hash,
             ARRAY['student'], now()
      FROM generate_series(1, $((STUDENTS - 1))) i,
           (SELECT password_hash FROM users WHERE email = 'bench-student-0@bench.example') t"
    work="$DATA/run-$n"
    rm -rf "$work"
    out="$BENCH/results/cluster-$stamp-$n-$run-b$label.json"
    log "run $run/$RUNS, $n node(s), binary $label ($BIN): load now $(cut -d' ' -f1-3 /proc/loadavg)"
    python3 "$BENCH/cluster_run.py" --bin "$BIN" --chat-load "$DATA/chat-load" --nodes "$n" \
      --publishers "$PUBLISHERS" --viewers "$VIEWERS" --chat "$CHAT" --room-size $((CHAT / 2)) \
      --students "$STUDENTS" --duration "$DURATION" --input "$INPUT" --work "$work" \
      --teacher "$TEACHER" "${RECORD[@]}" --out "$out"
    results+=("$out")
  done
  done
done

python3 - "${results[@]}" <<'EOF'
import json, statistics, sys
rows = {}
for p in sys.argv[1:]:
    r = json.load(open(p))
    binary = p.rsplit("-b", 1)[1].split(".")[0]
    rows.setdefault((len(r["nodes"]), binary), []).append(r)
def med(rs, f):
    v = [f(r) for r in rs]
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else float("nan")
print("medians (CPU in % of one core, over chat-load's publishing window):")
for (n, binary), rs in sorted(rows.items()):
    per = "  ".join("node %d %.1f%% (%d streams)" % (i, med(rs, lambda r: r["nodes"][i]["cpu_publish_pct"]),
                                                   med(rs, lambda r: r["nodes"][i]["streams"])) for i in range(n))
    print(f"  {n} node(s), binary {binary}, {len(rs)} run(s): sum {med(rs, lambda r: r['cpu_publish_sum_pct']):.1f}%  "
          f"busiest {med(rs, lambda r: r['cpu_publish_max_pct']):.1f}%  haproxy {med(rs, lambda r: r['haproxy']['cpu_publish_pct']):.1f}%")
    print(f"    {per}")
    print(f"    chat p50 {med(rs, lambda r: r['chat']['latency_ms']['p50']):.1f} ms p99 {med(rs, lambda r: r['chat']['latency_ms']['p99']):.1f} ms "
          f"lost {med(rs, lambda r: r['chat']['lost']):.0f} dup {med(rs, lambda r: r['chat']['duplicated']):.0f}; "
          f"HLS playlist p50 {med(rs, lambda r: r['hls']['playlist_ms']['p50']):.1f} ms p99 {med(rs, lambda r: r['hls']['playlist_ms']['p99']):.1f} ms, "
          f"segment p50 {med(rs, lambda r: r['hls']['segment_ms']['p50']):.1f} ms, errors {med(rs, lambda r: r['hls']['errors']):.0f}; "
          f"RSS per node {med(rs, lambda r: statistics.median(x['rss_mib'] for x in r['nodes'])):.0f} MiB")
EOF
