#!/usr/bin/env bash
# RTMP -> live HLS benchmark: WeMaster vs nginx with Debian's RTMP module, same input, same machine.
#
#   bench/rtmp-hls.sh                         # N = 1 5 10 20, 60 s per run, 2 runs (3 at N=20), + profile
#   bench/rtmp-hls.sh --streams "1 5" --duration 20 --runs 1 --runs-max-n 1 --profile no   # smoke run
#   bench/rtmp-hls.sh --profile only          # only the perf / thread profile at N=10
#
# Options (each also settable by environment variable, in brackets):
#   --streams "1 5 10 20"  [BENCH_STREAMS]   publisher counts
#   --duration 60          [BENCH_DURATION]  seconds per run
#   --skip 10              [BENCH_SKIP]      seconds skipped before the steady CPU window
#   --runs 2               [BENCH_RUNS]      runs per (server, N); --runs-max-n 3 [BENCH_RUNS_MAX_N]
#                                            runs for the largest N
#   --servers "wemaster nginx" [BENCH_SERVERS]
#   --poll-ms 50           [BENCH_POLL_MS]   playlist poll interval
#   --quiet-wait 900       [BENCH_QUIET_WAIT] seconds to wait for a quiet machine before a run
#   --profile yes|no|only  [BENCH_PROFILE]   perf record (or a thread breakdown) at N=--profile-n 10
#   --perf-callgraph fp|dwarf [BENCH_PERF_CALLGRAPH]  perf record -g, or dwarf unwinding (deeper
#                                            stacks through Rust and GStreamer, bigger files)
#   --profile-servers "wemaster nginx"       servers profiled
#   --record no|yes|"no yes" [BENCH_RECORD]  recording: WeMaster streams created with record
#                                            false/true (true: reconnect_window_s 0, and after the
#                                            run every publisher is stopped and the time to `ready`
#                                            measured, then the time to the MP4, `mp4_url`: since
#                                            27d631a `ready` comes first), nginx with `record off` /
#                                            `record all` (FLV)
#   --storage local|s3     [BENCH_STORAGE]   WeMaster's storage backend; s3 = a private s3s-fs per
#                                            run ($BENCH_S3S_FS, default ~/.cargo/bin/s3s-fs;
#                                            cargo install s3s-fs --version 0.14.1 --features binary)
#   --wemaster-ports RTMP,HTTP [BENCH_WEMASTER_PORTS]  fixed ports for WeMaster (default: free
#                                            ones picked per run); --nginx-ports [BENCH_NGINX_PORTS]
#   --callgrind yes        [BENCH_CALLGRIND]  instead of the matrix: WeMaster alone under
#                                            valgrind --tool=callgrind, instruction counts over a
#                                            steady window (bench/rtmp_hls_callgrind.py; its
#                                            options after --, e.g. -- --streams 1 --window 20)
#   --long SECONDS         [BENCH_LONG]      instead of the matrix: one WeMaster, --streams N (one
#                                            number, default 2) recorded streams each watched by a
#                                            viewer for SECONDS (7200 = the 2-hour lesson); RSS
#                                            sampled, its slope after a 10-minute warm-up, each
#                                            recording ready at the end (bench/long_live.py; its
#                                            options after --, e.g. -- --sample 5 --warmup 300)
#   --players yes          [BENCH_PLAYERS]   instead of the matrix: the second harness
#                                            (bench/rtmp_players.py, none of rtmp_hls.py's code):
#                                            real HLS players (ffmpeg's demuxer, polling once per
#                                            target duration), rounds of W+N in alternating order,
#                                            CPU per stream at --streams N (one number, default
#                                            20); its options after --, e.g. -- --rounds 4
#   --no-build                               use the existing target/release/wemaster
#   --keep                                   keep the servers' temp dirs (logs, segments)
#   -- ARGS                                  passed on to bench/rtmp_hls.py (e.g. -- --noise-max 0.5
#                                            --profile-n 20; see python3 bench/rtmp_hls.py --help)
#
# What it does: installs what is missing (ffmpeg, nginx, libnginx-mod-rtmp, GStreamer, perf
# tools are optional), builds `wemaster` (release), encodes the input once into bench/.cache/,
# starts a private PostgreSQL (port $WEMASTER_PG_PORT, default 55440) and Redis
# ($WEMASTER_REDIS_PORT, default 56390) with their files under bench/.cache/data, creates the
# benchmark user, then hands over to bench/rtmp_hls.py, which runs the matrix and writes
# bench/results/rtmp-hls-<time>.json and prints the table. Results: docs/benchmarks.md.
set -euo pipefail

: "${WEMASTER_PG_PORT:=55440}"
: "${WEMASTER_REDIS_PORT:=56390}"
export WEMASTER_PG_PORT WEMASTER_REDIS_PORT
# shellcheck source=../scripts/lib.sh
source "$(dirname "$0")/../scripts/lib.sh"
BENCH="$ROOT/bench"
CACHE="$BENCH/.cache"
# Our own PostgreSQL/Redis files: never the ones scripts/run or scripts/test use.
DATA="$CACHE/data"
cd "$ROOT"

STREAMS=${BENCH_STREAMS:-"1 5 10 20"}
DURATION=${BENCH_DURATION:-60}
SKIP=${BENCH_SKIP:-10}
RUNS=${BENCH_RUNS:-2}
RUNS_MAX_N=${BENCH_RUNS_MAX_N:-3}
SERVERS=${BENCH_SERVERS:-"wemaster nginx"}
POLL_MS=${BENCH_POLL_MS:-50}
QUIET_WAIT=${BENCH_QUIET_WAIT:-900}
PROFILE=${BENCH_PROFILE:-yes}
PERF_CALLGRAPH=${BENCH_PERF_CALLGRAPH:-fp}
PROFILE_SERVERS=${BENCH_PROFILE_SERVERS:-"wemaster nginx"}
RECORD=${BENCH_RECORD:-no}
STORAGE=${BENCH_STORAGE:-local}
S3S_FS=${BENCH_S3S_FS:-$HOME/.cargo/bin/s3s-fs}
WEMASTER_PORTS=${BENCH_WEMASTER_PORTS:-}
NGINX_PORTS=${BENCH_NGINX_PORTS:-}
CALLGRIND=${BENCH_CALLGRIND:-no}
LONG=${BENCH_LONG:-}
PLAYERS=${BENCH_PLAYERS:-no}
BUILD=1
KEEP=()
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --streams) STREAMS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --skip) SKIP=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --runs-max-n) RUNS_MAX_N=$2; shift 2 ;;
    --servers) SERVERS=$2; shift 2 ;;
    --poll-ms) POLL_MS=$2; shift 2 ;;
    --quiet-wait) QUIET_WAIT=$2; shift 2 ;;
    --profile) PROFILE=$2; shift 2 ;;
    --perf-callgraph) PERF_CALLGRAPH=$2; shift 2 ;;
    --profile-servers) PROFILE_SERVERS=$2; shift 2 ;;
    --record) RECORD=$2; shift 2 ;;
    --storage) STORAGE=$2; shift 2 ;;
    --wemaster-ports) WEMASTER_PORTS=$2; shift 2 ;;
    --nginx-ports) NGINX_PORTS=$2; shift 2 ;;
    --callgrind) CALLGRIND=$2; shift 2 ;;
    --long) LONG=$2; shift 2 ;;
    --players) PLAYERS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --keep) KEEP=(--keep); shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

# --- packages -------------------------------------------------------------------------------
# Debian's nginx package starts the system service on install unless a policy-rc.d forbids it:
# we only want the binary and the module, so forbid it for the install if nothing else does.
need=()
for p in ffmpeg nginx libnginx-mod-rtmp python3 curl "${RUNTIME_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null && as_root chmod +x "$policy"
  fi
  install_packages "${need[@]}"
  [ -n "$policy" ] && as_root rm -f "$policy"
fi
if [ "$STORAGE" = s3 ] && [ ! -x "$S3S_FS" ]; then
  die "no $S3S_FS: cargo install s3s-fs --version 0.14.1 --features binary (or set BENCH_S3S_FS)"
fi
NGINX_MODULE=/usr/lib/nginx/modules/ngx_rtmp_module.so
[ -f "$NGINX_MODULE" ] || die "no $NGINX_MODULE: is libnginx-mod-rtmp installed?"
if [ "$PROFILE" != no ] && ! command -v perf >/dev/null; then
  # Optional: without perf the profile falls back to a per-thread CPU breakdown.
  (install_packages linux-perf) || log "perf not installable: the profile will be a thread breakdown only"
fi

# --- wemaster -------------------------------------------------------------------------------
ensure_rust
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/wemaster"
if [ "$BUILD" = 1 ]; then
  log "building wemaster (release)"
  (cd "$ROOT" && cargo build --release --bin wemaster)
fi
[ -x "$BIN" ] || die "no $BIN (build it: cargo build --release --bin wemaster)"
# The target dir is shared: someone may rebuild while we measure. Run a private copy.
mkdir -p "$CACHE"
cp "$BIN" "$CACHE/wemaster.tmp" && mv "$CACHE/wemaster.tmp" "$CACHE/wemaster"
BIN="$CACHE/wemaster"

# --- input: 720p30 H.264 2.5 Mbit/s, 2 s GOP + AAC, 60 s, FLV (scripts/lib.sh); encoded once
INPUT=$(bench_input "$CACHE")

# --- PostgreSQL, Redis, user ----------------------------------------------------------------
# Stop, at the end, the PostgreSQL and Redis this run started (not ones already running).
pg_was_up=0; redis_was_up=0
pg_run "$(pg_bin)/pg_ctl" -D "$(pg_data_dir)" status >/dev/null 2>&1 && pg_was_up=1
redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && redis_was_up=1
stop_services() {
  [ "$redis_was_up" = 1 ] || redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  [ "$pg_was_up" = 1 ] || pg_run "$(pg_bin)/pg_ctl" -D "$(pg_data_dir)" -m fast stop >/dev/null 2>&1 || true
}
trap stop_services EXIT
start_private_postgres
ensure_database wemaster_bench
export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/wemaster_bench"
start_private_redis
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
# Token signing keys (Ed25519, made on first start) in our own data dir (auth.keys_dir since
# the identity merge; the former auth.jwt_secret_file is refused as an unknown field).
export WEMASTER__AUTH__KEYS_DIR="$DATA/keys"
"$BIN" migrate >/dev/null
EMAIL=bench@example.com
PASSWORD_FILE=$(secret_file bench-password)
export WEMASTER_ADMIN_PASSWORD; WEMASTER_ADMIN_PASSWORD=$(cat "$PASSWORD_FILE")
if ! out=$("$BIN" admin create-user --email "$EMAIL" --role admin 2>&1); then
  grep -qi "exist" <<<"$out" || die "cannot create the benchmark user: $out"
fi

# --- machine --------------------------------------------------------------------------------
gst=$(gst-inspect-1.0 --version 2>/dev/null | sed -n 2p)
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$ROOT" status --porcelain -- src media pipelines Cargo.toml Cargo.lock 2>/dev/null | wc -l)
meta=$(python3 - "$gst" "$commit" "$dirty" <<'EOF'
import json, os, platform, subprocess, sys
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
ff = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[0]
print(json.dumps({"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
                  "gstreamer": sys.argv[1], "ffmpeg": ff,
                  "wemaster_commit": sys.argv[2], "wemaster_tree_changes": int(sys.argv[3]),
                  "mem_total_kib": int(open("/proc/meminfo").readline().split()[1])}))
EOF
)
log "machine: $meta"
log "load now: $(uptime)"

if [ "$CALLGRIND" = yes ]; then
  command -v valgrind >/dev/null || install_packages valgrind
  python3 "$BENCH/rtmp_hls_callgrind.py" \
    --input "$INPUT" --wemaster-bin "$BIN" --pipelines-dir "$ROOT/pipelines" --email "$EMAIL" \
    --poll-ms "$POLL_MS" --results-dir "$BENCH/results" ${WEMASTER_PORTS:+--ports "$WEMASTER_PORTS"} \
    "${KEEP[@]}" "${EXTRA[@]}"
  exit 0
fi

if [ "$PLAYERS" = yes ]; then
  [ -n "${BENCH_STREAMS:-}" ] || [[ "$STREAMS" != *" "* ]] || STREAMS=20
  python3 "$BENCH/rtmp_players.py" \
    --input "$INPUT" --wemaster-bin "$BIN" --pipelines-dir "$ROOT/pipelines" \
    --nginx-module "$NGINX_MODULE" --email "$EMAIL" --streams "$STREAMS" \
    --results-dir "$BENCH/results" ${WEMASTER_PORTS:+--wemaster-ports "$WEMASTER_PORTS"} \
    --meta "$meta" "${EXTRA[@]}"
  exit 0
fi

if [ -n "$LONG" ]; then
  # One number of streams (the matrix's default list means the long run's default, 2).
  [ -n "${BENCH_STREAMS:-}" ] || [[ "$STREAMS" != *" "* ]] || STREAMS=2
  python3 "$BENCH/long_live.py" \
    --input "$INPUT" --wemaster-bin "$BIN" --pipelines-dir "$ROOT/pipelines" --email "$EMAIL" \
    --seconds "$LONG" --streams "$STREAMS" --storage "$STORAGE" --s3s-fs "$S3S_FS" \
    --results-dir "$BENCH/results" ${WEMASTER_PORTS:+--wemaster-ports "$WEMASTER_PORTS"} \
    --meta "$meta" "${KEEP[@]}" "${EXTRA[@]}"
  exit 0
fi

python3 "$BENCH/rtmp_hls.py" \
  --input "$INPUT" --wemaster-bin "$BIN" --pipelines-dir "$ROOT/pipelines" \
  --nginx-module "$NGINX_MODULE" --email "$EMAIL" \
  --streams "$STREAMS" --duration "$DURATION" --skip "$SKIP" --runs "$RUNS" \
  --runs-max-n "$RUNS_MAX_N" --servers "$SERVERS" --poll-ms "$POLL_MS" \
  --quiet-wait "$QUIET_WAIT" --profile "$PROFILE" --perf-callgraph "$PERF_CALLGRAPH" \
  --profile-servers "$PROFILE_SERVERS" --record "$RECORD" --storage "$STORAGE" \
  --s3s-fs "$S3S_FS" --results-dir "$BENCH/results" \
  ${WEMASTER_PORTS:+--wemaster-ports "$WEMASTER_PORTS"} ${NGINX_PORTS:+--nginx-ports "$NGINX_PORTS"} \
  --meta "$meta" "${KEEP[@]}" "${EXTRA[@]}"
