#!/usr/bin/env bash
# Fault injection under load (a bench, not a CI test): a steady mixed load on one server while
# its dependencies fail one after the other, then the checks of what the failures may not cost.
#
#   bench/faults.sh                                  # the full run: 20 minutes, the issue's numbers
#   bench/faults.sh --minutes 4 --conns 200          # a short run (about 8 minutes in all)
#
# Load (bench/faults_load.py, one asyncio process): RTMP publishers (ffmpeg copying one clip
# encoded once, in a reconnect loop) on the lessons' live streams, recorded to S3 (s3s-fs);
# chat connections spread over the lessons' rooms, a few senders per room (1 message/s per
# room), every connection resuming with since_seq after a drop; buyers topping up their wallet
# with the sandbox provider and buying courses from it; catalogue reads; live playlists polled.
# Faults, in this order, each after the previous one recovered: PostgreSQL restart (pg_ctl
# restart -m fast), Redis restart (SHUTDOWN, start again), s3s-fs stopped for --s3-down
# seconds, the server SIGKILLed and started again 1 s later, the spool tmpfs filled for
# --spool-hold seconds. Afterwards: recordings complete (DB rows, S3 objects, replay playlists), every acked
# chat message stored once and in order, the ledger audit empty and every wallet equal to its
# orders, the server's memory over time; per fault the seconds of degraded service and the
# errors clients saw. Results: bench/results/faults-<UTC time>.json and a summary on stdout;
# figures in docs/benchmarks.md ("Fault injection").
#
# Options (each also settable by environment variable, in brackets):
#   --minutes 20        [FAULTS_MINUTES]      length of the load; the faults are spread over it
#   --publishers 10     [FAULTS_PUBLISHERS]   RTMP publishers, one per lesson (= chat rooms)
#   --conns 1000        [FAULTS_CONNS]        chat WebSocket connections (10 per student)
#   --senders 3         [FAULTS_SENDERS]      senders per room (together 1 message/s per room)
#   --buyers 20         [FAULTS_BUYERS]       students buying courses (one top-up + one purchase
#                                             every --purchase-every seconds, round robin)
#   --courses 60        [FAULTS_COURSES]      paid courses to buy (buyers x courses >= purchases)
#   --purchase-every 2  [FAULTS_PURCHASE_EVERY]
#   --reads 5           [FAULTS_READS]        catalogue reads per second
#   --s3-down 60        [FAULTS_S3_DOWN]      seconds s3s-fs stays stopped
#   --spool-hold 45     [FAULTS_SPOOL_HOLD]   seconds the spool stays full
#   --spool-mb auto     [FAULTS_SPOOL_MB]     size of the spool tmpfs (auto: what the recordings
#                                             of the run need, ~16 KiB/s per publisher, + 32 MiB)
#   --faults "pg redis s3 kill spool"  [FAULTS_LIST]  which faults, in this order (also
#                                             "s3kill": kill -9 halfway through an S3 outage)
#   --bin PATH          [FAULTS_BIN]          the server binary (default .bench-bin/wemaster,
#                                             else target/debug/wemaster; never built here)
#   --port 18640        [FAULTS_PORT]         HTTP; RTMP is port+1, s3s-fs port+2
#   --recheck DIR                             no load, no faults: start the services again on the
#                                             work files of an earlier run (DIR) and run the
#                                             checks again (after a change to the checker)
#
# Private services (never the machine's own): PostgreSQL on $WEMASTER_PG_PORT (55532, data in
# /var/tmp/wemaster-faults/pg), Redis on $WEMASTER_REDIS_PORT (56479), both started here and
# stopped at the end; the spool is a tmpfs mounted here (needs root). Work files:
# .data/faults/run-<time>/ (server log, publisher logs, load and check JSON). Python: the venv
# .data/venv-faults (websockets, httpx), created when missing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

MINUTES=${FAULTS_MINUTES:-20}
PUBLISHERS=${FAULTS_PUBLISHERS:-10}
CONNS=${FAULTS_CONNS:-1000}
SENDERS=${FAULTS_SENDERS:-3}
BUYERS=${FAULTS_BUYERS:-20}
COURSES=${FAULTS_COURSES:-60}
PURCHASE_EVERY=${FAULTS_PURCHASE_EVERY:-2}
READS=${FAULTS_READS:-5}
S3_DOWN=${FAULTS_S3_DOWN:-60}
SPOOL_HOLD=${FAULTS_SPOOL_HOLD:-45}
SPOOL_MB=${FAULTS_SPOOL_MB:-auto}
FAULT_LIST=${FAULTS_LIST:-"pg redis s3 kill spool"}
BIN=${FAULTS_BIN:-}
PORT=${FAULTS_PORT:-18640}
RECHECK=""
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES=$2; shift 2 ;;
    --publishers) PUBLISHERS=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --senders) SENDERS=$2; shift 2 ;;
    --buyers) BUYERS=$2; shift 2 ;;
    --courses) COURSES=$2; shift 2 ;;
    --purchase-every) PURCHASE_EVERY=$2; shift 2 ;;
    --reads) READS=$2; shift 2 ;;
    --s3-down) S3_DOWN=$2; shift 2 ;;
    --spool-hold) SPOOL_HOLD=$2; shift 2 ;;
    --spool-mb) SPOOL_MB=$2; shift 2 ;;
    --faults) FAULT_LIST=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --recheck) RECHECK=$(cd "$2" && pwd); shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

if [ -n "$RECHECK" ]; then
  # shellcheck disable=SC1091
  source "$RECHECK/run.env"   # the options and secrets of that run
fi
if [ -z "$BIN" ]; then
  BIN="$ROOT/.bench-bin/wemaster"
  [ -x "$BIN" ] || BIN="$ROOT/target/debug/wemaster"
fi
[ -x "$BIN" ] || die "no server binary at $BIN (--bin PATH)"
S3S=$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")
[ -x "$S3S" ] || die "s3s-fs not found (scripts/test installs it: cargo install s3s-fs --features binary)"
command -v ffmpeg >/dev/null || die "ffmpeg not found"
[ "$(id -u)" -eq 0 ] || die "run as root (the spool is a tmpfs mounted here; PostgreSQL runs as postgres)"

PG_PORT=${WEMASTER_PG_PORT:-55532}
REDIS_PORT=${WEMASTER_REDIS_PORT:-56479}
HTTP_PORT=$PORT; RTMP_PORT=$((PORT + 1)); S3_PORT=$((PORT + 2))
for p in "$PG_PORT" "$REDIS_PORT" "$HTTP_PORT" "$RTMP_PORT" "$S3_PORT"; do
  case "$p" in 5432|6379|55432|56379|29040|590[0-9][0-9]|59100)
    die "port $p belongs to the machine or the test suite: pick another" ;; esac
done
for p in "$HTTP_PORT" "$RTMP_PORT" "$S3_PORT"; do
  ss -ltn "sport = :$p" | grep -q LISTEN && die "port $p is in use (--port)"
done
ROOMS=$PUBLISHERS
[ "$SPOOL_MB" = auto ] && SPOOL_MB=$((32 + PUBLISHERS * (MINUTES + 4) * 60 * 16 / 1024))

DATA="$ROOT/.data/faults"
if [ -n "$RECHECK" ]; then
  WORK=$RECHECK
else
  STAMP=$(date -u +%Y%m%d-%H%M%S)
  WORK="$DATA/run-$STAMP"
fi
SPOOL="$WORK/spool"
S3_DIR="$WORK/s3"
PG_DIR=/var/tmp/wemaster-faults/pg
RESULTS="$ROOT/bench/results"
mkdir -p "$WORK" "$S3_DIR" "$SPOOL" "$RESULTS" "$WORK/pub"
FAULTS_LOG="$WORK/faults.jsonl"
[ -n "$RECHECK" ] || : >"$FAULTS_LOG"
now() { date +%s.%N; }

# --- Python ------------------------------------------------------------------------------
VENV="$ROOT/.data/venv-faults"
if ! "$VENV/bin/python" -c 'import websockets, httpx' 2>/dev/null; then
  log "creating $VENV (websockets, httpx)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q websockets httpx
fi
PY="$VENV/bin/python"
LOAD="$ROOT/bench/faults_load.py"

# --- processes we start, stopped on exit ---------------------------------------------------
SERVER_PID=""; S3_PID=""; LOAD_PID=""; PUB_PIDS=()
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$PG_BIN/pg_ctl" ] || die "pg_ctl not found (install postgresql)"
pg() { runuser -u postgres -- "$@"; }
stop_publishers() {  # each loop stops its own ffmpeg (trap in publisher())
  touch "$WORK/pub/stop"
  local p
  for p in "${PUB_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PUB_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PUB_PIDS=()
  return 0
}
cleanup() {
  set +e
  [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null
  stop_publishers
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  [ -n "$S3_PID" ] && kill "$S3_PID" 2>/dev/null && wait "$S3_PID" 2>/dev/null
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1
  pg "$PG_BIN/pg_ctl" -D "$PG_DIR" -m fast stop >/dev/null 2>&1
  mountpoint -q "$SPOOL" && umount "$SPOOL"
  log "work files: $WORK"
}
trap cleanup EXIT

# --- PostgreSQL, Redis, s3s-fs, the spool ---------------------------------------------------
start_pg() {
  pg "$PG_BIN/pg_ctl" -D "$PG_DIR" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
}
if [ ! -s "$PG_DIR/PG_VERSION" ]; then
  log "creating a private PostgreSQL cluster in $PG_DIR"
  mkdir -p "$PG_DIR" && chown -R postgres:postgres "$(dirname "$PG_DIR")"
  pg "$PG_BIN/initdb" -D "$PG_DIR" -U postgres --auth=trust -E UTF8 >/dev/null
fi
pg "$PG_BIN/pg_ctl" -D "$PG_DIR" status >/dev/null 2>&1 || { log "PostgreSQL on $PG_PORT"; start_pg; }
ADMIN_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
[ -n "$RECHECK" ] ||
  psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS wemaster_faults" -c "CREATE DATABASE wemaster_faults" >/dev/null
export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/wemaster_faults"

mkdir -p "$WORK/redis"
start_redis() {
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --dir "$WORK/redis" \
    --pidfile "$WORK/redis/redis.pid" --logfile "$WORK/redis/redis.log" --save "60 1" --appendonly no >/dev/null
  for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "Redis did not start (see $WORK/redis/redis.log)"
}
redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
log "Redis on $REDIS_PORT"
start_redis
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"

if [ -z "$RECHECK" ]; then
  S3_KEY="faults$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  S3_SECRET="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  PLAYBACK_SECRET="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
fi
start_s3() {
  "$S3S" --host 127.0.0.1 --port "$S3_PORT" --access-key "$S3_KEY" --secret-key "$S3_SECRET" \
    "$S3_DIR" >>"$WORK/s3s-fs.log" 2>&1 &
  S3_PID=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" && return 0; sleep 0.1; done
  die "s3s-fs did not start (see $WORK/s3s-fs.log)"
}
log "s3s-fs on $S3_PORT ($S3_DIR)"
start_s3

mount -t tmpfs -o "size=${SPOOL_MB}m" tmpfs "$SPOOL"
log "spool: tmpfs of $SPOOL_MB MiB at $SPOOL"

# --- the server ----------------------------------------------------------------------------
export WEMASTER__HTTP__LISTEN="127.0.0.1:$HTTP_PORT" WEMASTER__HTTP__PUBLIC_URL="http://127.0.0.1:$HTTP_PORT"
export WEMASTER__RTMP__LISTEN="127.0.0.1:$RTMP_PORT" WEMASTER__WHIP__UDP_LISTEN="127.0.0.1:0"
export WEMASTER__STORAGE__BACKEND=s3 WEMASTER__STORAGE__S3__ENDPOINT="http://127.0.0.1:$S3_PORT"
export WEMASTER__STORAGE__S3__BUCKET=wemaster-faults WEMASTER__STORAGE__S3__ACCESS_KEY_ID="$S3_KEY"
export WEMASTER__STORAGE__S3__SECRET_ACCESS_KEY="$S3_SECRET" WEMASTER__STORAGE__S3__FORCE_PATH_STYLE=true
# The bucket is made by hand (s3s-fs keeps a bucket as a directory): with create_bucket = true
# the server refuses to start while S3 is down, which a restart during an outage would hit.
mkdir -p "$S3_DIR/wemaster-faults"
export WEMASTER__STORAGE__S3__CREATE_BUCKET=false
export WEMASTER__MEDIA__SPOOL_DIR="$SPOOL" WEMASTER__MEDIA__PIPELINES_DIR="$ROOT/pipelines"
# The spool is small on purpose: refuse new recordings only when it is really full.
export WEMASTER__RECORDINGS__MIN_FREE_BYTES=$((4 * 1024 * 1024))
export WEMASTER__RECORDINGS__MAX_SPOOL_BYTES=$((SPOOL_MB * 1024 * 1024))
export WEMASTER__AUTH__KEYS_DIR="$WORK/keys" WEMASTER__AUTH__ACCESS_TOKEN_TTL_S=3600
export WEMASTER__AUTH__LIMITS__REGISTRATIONS_PER_IP_HOUR=100000
# Fixed, so playback tokens handed out before a kill still play after it.
export WEMASTER__PLAYBACK__SECRET="$PLAYBACK_SECRET"
export WEMASTER__EMAIL__SMTP_PORT=9   # nothing listens: notification mail fails fast and retries
export WEMASTER__LOG__LEVEL="${WEMASTER__LOG__LEVEL:-warn,wemaster::recordings=info,wemaster::email=error}"
API="http://127.0.0.1:$HTTP_PORT/api/v1"

start_server() {
  "$BIN" serve >>"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  echo "$SERVER_PID" >"$WORK/server.pid"
  for _ in $(seq 600); do
    curl -sf -o /dev/null "http://127.0.0.1:$HTTP_PORT/healthz" && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 30 "$WORK/server.log" >&2; die "the server exited"; }
    sleep 0.1
  done
  tail -n 30 "$WORK/server.log" >&2; die "the server did not come up"
}
log "server: $BIN ($("$BIN" --version 2>/dev/null || echo '?'))"
"$BIN" migrate >/dev/null
start_server
DURATION=$((MINUTES * 60))
read -r -a FAULTS <<<"$FAULT_LIST"
NF=${#FAULTS[@]}
if [ "$MINUTES" -ge 15 ]; then WARMUP=180; TAIL=180; else WARMUP=40; TAIL=60; fi
# Each fault starts at least 30 s after the previous one recovered: lengthen a run too short.
NEED=$((WARMUP + TAIL + NF * 40 + 2 * S3_DOWN + SPOOL_HOLD))
if [ "$DURATION" -lt "$NEED" ]; then
  [ -n "$RECHECK" ] || log "warning: $MINUTES min cannot hold these faults: the load runs $NEED s"
  DURATION=$NEED
fi
if [ -z "$RECHECK" ]; then
cat >"$WORK/run.env" <<ENV
MINUTES=$MINUTES PUBLISHERS=$PUBLISHERS CONNS=$CONNS SENDERS=$SENDERS BUYERS=$BUYERS COURSES=$COURSES
PURCHASE_EVERY=$PURCHASE_EVERY READS=$READS S3_DOWN=$S3_DOWN SPOOL_HOLD=$SPOOL_HOLD SPOOL_MB=$SPOOL_MB
FAULT_LIST="$FAULT_LIST" BIN="$BIN" PORT=$PORT STAMP=$STAMP
S3_KEY=$S3_KEY S3_SECRET=$S3_SECRET PLAYBACK_SECRET=$PLAYBACK_SECRET
ENV
PASSWORD="fault bench passphrase $(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export WEMASTER_ADMIN_PASSWORD="$PASSWORD"
"$BIN" admin create-user --email teacher@faults.bench --role teacher >/dev/null
"$BIN" admin create-user --email admin@faults.bench --role admin >/dev/null
unset WEMASTER_ADMIN_PASSWORD

log "set-up: $ROOMS lessons, $CONNS chat connections, $BUYERS buyers, $COURSES paid courses"
FAULTS_PASSWORD="$PASSWORD" "$PY" "$LOAD" setup --api "$API" --rtmp "rtmp://127.0.0.1:$RTMP_PORT/live" \
  --state "$WORK/state.json" --rooms "$ROOMS" --conns "$CONNS" --buyers "$BUYERS" --courses "$COURSES"

# --- publishers ----------------------------------------------------------------------------
CLIP="$DATA/clip.flv"
if [ ! -s "$CLIP" ]; then
  log "encoding the clip once (640x360 25 fps, 2 s GOP, AAC, 10 s)"
  nice ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc=size=640x360:rate=25 \
    -f lavfi -i sine=frequency=440:sample_rate=44100 -t 10 -c:v libx264 -preset veryfast \
    -profile:v main -b:v 80k -maxrate 100k -bufsize 200k -g 50 -keyint_min 50 -sc_threshold 0 \
    -pix_fmt yuv420p -c:a aac -b:a 32k -ac 1 -f flv "$CLIP"
fi
rm -f "$WORK/pub/stop"
publisher() {   # N URL: publish the clip in a loop until pub/stop exists; log each exit
  local n=$1 url=$2 ff="" rc
  trap '[ -n "$ff" ] && kill "$ff" 2>/dev/null; exit 0' TERM
  while [ ! -e "$WORK/pub/stop" ]; do
    ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$CLIP" -c copy -f flv "$url" \
      >>"$WORK/pub/$n.log" 2>&1 &
    ff=$!
    rc=0
    wait "$ff" || rc=$?
    ff=""
    printf '{"publisher":%d,"t":%s,"rc":%d}\n' "$n" "$(now)" "$rc" >>"$WORK/pub/exits.jsonl"
    [ -e "$WORK/pub/stop" ] || sleep 1
  done
}
n=0
while read -r url; do
  publisher "$n" "$url" &
  PUB_PIDS+=($!)
  n=$((n + 1))
done < <("$PY" -c 'import json,sys; [print(l["rtmp_url"]) for l in json.load(open(sys.argv[1]))["lessons"]]' "$WORK/state.json")
log "$n publishers started"
sleep 8

# --- load and faults -----------------------------------------------------------------------
"$PY" "$LOAD" load --state "$WORK/state.json" --out "$WORK/load.json" --duration "$DURATION" \
  --senders "$SENDERS" --purchase-every "$PURCHASE_EVERY" --reads "$READS" \
  --pidfile "$WORK/server.pid" >"$WORK/load.log" 2>&1 &
LOAD_PID=$!
T0=$(now)
log "load for $DURATION s (pid $LOAD_PID); faults: $FAULT_LIST"

SPACING=$(( (DURATION - WARMUP - TAIL) / (NF > 0 ? NF : 1) ))
fault_log() {  # NAME START END [NOTE]
  printf '{"fault":"%s","start":%s,"end":%s,"note":"%s"}\n' "$1" "$2" "$3" "${4:-}" >>"$FAULTS_LOG"
  log "fault $1: $(printf '%.1f' "$(echo "$3 - $2" | bc)") s${4:+ ($4)}"
}
sleep_until() { local d; d=$(echo "$1 - $(now)" | bc); [ "$(echo "$d > 0" | bc)" = 1 ] && sleep "$d"; return 0; }

fault_pg() {
  local s e; s=$(now)
  pg "$PG_BIN/pg_ctl" -D "$PG_DIR" -m fast -w -t 60 restart \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200" >/dev/null
  e=$(now); fault_log pg "$s" "$e" "pg_ctl restart -m fast"
}
fault_redis() {
  local s e; s=$(now)
  redis-cli -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || true
  while redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.05; done
  start_redis
  e=$(now); fault_log redis "$s" "$e" "SHUTDOWN (saves), start"
}
fault_s3() {
  local s e; s=$(now)
  kill "$S3_PID"; wait "$S3_PID" 2>/dev/null || true
  sleep "$S3_DOWN"
  start_s3
  e=$(now); fault_log s3 "$s" "$e" "s3s-fs stopped ${S3_DOWN} s"
}
fault_spool() {
  local s e full; s=$(now)
  dd if=/dev/zero of="$SPOOL/filler" bs=1M status=none 2>/dev/null || true
  full=$(df -m --output=avail "$SPOOL" | tail -n 1 | tr -d ' ')
  sleep "$SPOOL_HOLD"
  rm -f "$SPOOL/filler"
  e=$(now); fault_log spool "$s" "$e" "tmpfs full (${full} MiB left) for ${SPOOL_HOLD} s"
}
fault_s3kill() {  # not in the default list: kill -9 while storage is down (uploads queued)
  local s e; s=$(now)
  kill "$S3_PID"; wait "$S3_PID" 2>/dev/null || true
  sleep "$((S3_DOWN / 2))"
  kill -9 "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  sleep 1
  start_server
  sleep "$((S3_DOWN - S3_DOWN / 2))"
  start_s3
  e=$(now); fault_log s3kill "$s" "$e" "s3s-fs stopped ${S3_DOWN} s, kill -9 after $((S3_DOWN / 2)) s"
}
fault_kill() {
  local s e; s=$(now)
  kill -9 "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  sleep 1
  start_server
  e=$(now); fault_log kill "$s" "$e" "kill -9, started again 1 s later; end = /healthz answers"
}

prev_end=$T0
for i in "${!FAULTS[@]}"; do
  f=${FAULTS[$i]}
  at=$(echo "$T0 + $WARMUP + $i * $SPACING" | bc)
  min=$(echo "$prev_end + 30" | bc)
  [ "$(echo "$at < $min" | bc)" = 1 ] && at=$min
  sleep_until "$at"
  kill -0 "$LOAD_PID" 2>/dev/null || die "the load process ended early (see $WORK/load.log)"
  case "$f" in
    pg) fault_pg ;; redis) fault_redis ;; s3) fault_s3 ;; spool) fault_spool ;; kill) fault_kill ;;
    s3kill) fault_s3kill ;;
    *) die "unknown fault $f" ;;
  esac
  prev_end=$(now)
done
[ "$(echo "$(now) > $T0 + $DURATION" | bc)" = 1 ] && log "warning: the faults outlasted the load (raise --minutes)"
wait "$LOAD_PID" || die "the load process failed (see $WORK/load.log)"
LOAD_PID=""
log "load done"

stop_publishers
fi  # not --recheck

# --- finish the recordings, check ---------------------------------------------------------
RESULT="$RESULTS/faults-$STAMP${RECHECK:+-recheck}.json"
"$PY" "$LOAD" check --state "$WORK/state.json" --load "$WORK/load.json" --faults "$FAULTS_LOG" \
  --publisher-exits "$WORK/pub/exits.jsonl" --database "$DATABASE_URL" \
  --s3-dir "$S3_DIR/wemaster-faults" --out "$RESULT" --pidfile "$WORK/server.pid" \
  --meta "$(printf '{"minutes":%s,"duration_s":%s,"warmup_s":%s,"publishers":%s,"conns":%s,"senders":%s,"buyers":%s,"courses":%s,"purchase_every":%s,"reads":%s,"s3_down":%s,"spool_hold":%s,"spool_mb":%s,"bin":"%s","work":"%s"}' \
     "$MINUTES" "$DURATION" "$WARMUP" "$PUBLISHERS" "$CONNS" "$SENDERS" "$BUYERS" "$COURSES" "$PURCHASE_EVERY" "$READS" "$S3_DOWN" "$SPOOL_HOLD" "$SPOOL_MB" "$BIN" "$WORK")" \
  | tee "$WORK/summary.txt"
log "results: $RESULT"
