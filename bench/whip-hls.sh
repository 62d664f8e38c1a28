#!/usr/bin/env bash
# WHIP -> live HLS benchmark: CPU per WHIP stream and time from POST to the first HLS segment,
# with RTMP of the same content on the same server as the reference (same run, same machine).
#
#   bench/whip-hls.sh                           # N = 1 4, 40 s per run, 3 runs, whip and rtmp
#   bench/whip-hls.sh --streams 1 --duration 20 --runs 1   # smoke run
#
# Options (each also settable by environment variable, in brackets):
#   --streams "1 4"        [BENCH_STREAMS]    publisher counts
#   --duration 40          [BENCH_DURATION]   seconds per run
#   --skip 10              [BENCH_SKIP]       seconds skipped before the steady CPU window
#   --runs 3               [BENCH_RUNS]       runs per (protocol, N), interleaved
#   --protocols "whip rtmp" [BENCH_PROTOCOLS] also "chromium" / "chromium-vp8": headless
#                                             Chromium (H.264 / VP8 transcoded), N = 1 only: the
#                                             time to first segment a browser gets, the transcode
#                                             cost
#   --quiet-wait 300       [BENCH_QUIET_WAIT] seconds to wait for a quiet machine before a run
#   --no-build                                use the existing release binary
#   --bin PATH             [BENCH_BIN]        measure this wemaster binary (implies --no-build)
#   --keep                                    keep the servers' temp dirs
#
# Content: the RTMP bench's input (bench/rtmp-hls.sh: 720p30 H.264 High 2.5 Mbps, 2 s GOP,
# testsrc2 + noise, AAC), encoded once into bench/.cache/. WebRTC carries Opus, not AAC: the
# WHIP publishers send the same H.264 bitstream (copied, not re-encoded) with the audio as
# Opus 48 kHz 128 kb/s, from an MPEG-TS made once from that FLV. The publisher is aiortc
# (PyPI, in a venv under bench/.cache/) with MediaPlayer(decode=False): packets pass through,
# so it costs little and sends exactly the file's frames in real time. The server transcodes
# Opus to AAC (as for any WHIP publisher); the RTMP reference does not need to.
# Results: bench/results/whip-hls-<time>.json and a table; see docs/benchmarks.md.
set -euo pipefail

: "${WEMASTER_PG_PORT:=55440}"
: "${WEMASTER_REDIS_PORT:=56390}"
export WEMASTER_PG_PORT WEMASTER_REDIS_PORT
# shellcheck source=../scripts/lib.sh
source "$(dirname "$0")/../scripts/lib.sh"
BENCH="$ROOT/bench"
CACHE="$BENCH/.cache"
DATA="$CACHE/data"
cd "$ROOT"

AIORTC_VERSION=1.16.0
STREAMS=${BENCH_STREAMS:-"1 4"}
DURATION=${BENCH_DURATION:-40}
SKIP=${BENCH_SKIP:-10}
RUNS=${BENCH_RUNS:-3}
PROTOCOLS=${BENCH_PROTOCOLS:-"whip rtmp"}
QUIET_WAIT=${BENCH_QUIET_WAIT:-300}
BUILD=1
BIN=${BENCH_BIN:-}
[ -n "$BIN" ] && BUILD=0
KEEP=()
while [ $# -gt 0 ]; do
  case "$1" in
    --streams) STREAMS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --skip) SKIP=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --protocols) PROTOCOLS=$2; shift 2 ;;
    --quiet-wait) QUIET_WAIT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --bin) BIN=$2; BUILD=0; shift 2 ;;
    --keep) KEEP=(--keep); shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

install_packages ffmpeg python3 python3-venv curl "${RUNTIME_PACKAGES[@]}"

# --- wemaster -------------------------------------------------------------------------------
ensure_rust
BIN=${BIN:-"${CARGO_TARGET_DIR:-$ROOT/target}/release/wemaster"}
if [ "$BUILD" = 1 ]; then
  log "building wemaster (release)"
  cargo build --release --bin wemaster
fi
[ -x "$BIN" ] || die "no $BIN (build it: cargo build --release --bin wemaster)"
# The target dir may be shared: run a private copy.
mkdir -p "$CACHE"
cp "$BIN" "$CACHE/wemaster-whip.tmp" && mv "$CACHE/wemaster-whip.tmp" "$CACHE/wemaster-whip"
BIN="$CACHE/wemaster-whip"

# --- inputs ---------------------------------------------------------------------------------
INPUT=$(bench_input "$CACHE")
WHIP_INPUT="$CACHE/input-720p30-2500k-g60-opus.ts"
if [ ! -s "$WHIP_INPUT" ] || [ "$INPUT" -nt "$WHIP_INPUT" ]; then
  log "making the WebRTC input once: $WHIP_INPUT (H.264 copied, AAC -> Opus)"
  ffmpeg -hide_banner -loglevel error -y -i "$INPUT" -map 0:v -map 0:a \
    -c:v copy -bsf:v h264_mp4toannexb -c:a libopus -b:a 128k -ar 48000 -ac 2 \
    -f mpegts "$WHIP_INPUT.tmp"
  mv "$WHIP_INPUT.tmp" "$WHIP_INPUT"
fi

VENV="$CACHE/venv-whip"
if ! "$VENV/bin/python" -c 'import aiortc' 2>/dev/null; then
  log "installing aiortc $AIORTC_VERSION (the WHIP publisher) into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --only-binary=:all: "aiortc==$AIORTC_VERSION"
fi
if [[ " $PROTOCOLS " == *" chromium"* ]]; then
  install_packages chromium
  "$VENV/bin/python" -c 'import websockets' 2>/dev/null ||
    "$VENV/bin/pip" install -q --only-binary=:all: "websockets==15.0.1"
fi

# --- PostgreSQL, Redis, user (as bench/rtmp-hls.sh) -----------------------------------------
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
export WEMASTER__AUTH__KEYS_DIR="$DATA/keys"
"$BIN" migrate >/dev/null
EMAIL=bench@example.com
PASSWORD_FILE=$(secret_file bench-password)
export WEMASTER_ADMIN_PASSWORD; WEMASTER_ADMIN_PASSWORD=$(cat "$PASSWORD_FILE")
if ! out=$("$BIN" admin create-user --email "$EMAIL" --role admin 2>&1); then
  grep -qi "exist" <<<"$out" || die "cannot create the benchmark user: $out"
fi

gst=$(gst-inspect-1.0 --version 2>/dev/null | sed -n 2p)
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$ROOT" status --porcelain -- src media pipelines Cargo.toml Cargo.lock 2>/dev/null | wc -l)
meta=$(python3 - "$gst" "$commit" "$dirty" <<'PY'
import json, os, platform, sys
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(json.dumps({"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
                  "gstreamer": sys.argv[1], "wemaster_commit": sys.argv[2],
                  "wemaster_tree_changes": int(sys.argv[3])}))
PY
)
log "machine: $meta"
log "load now: $(uptime)"

python3 "$BENCH/whip_hls.py" \
  --input "$INPUT" --whip-input "$WHIP_INPUT" --python "$VENV/bin/python" \
  --wemaster-bin "$BIN" --pipelines-dir "$ROOT/pipelines" --email "$EMAIL" \
  --streams "$STREAMS" --protocols "$PROTOCOLS" --duration "$DURATION" --skip "$SKIP" \
  --runs "$RUNS" --quiet-wait "$QUIET_WAIT" --results-dir "$BENCH/results" --meta "$meta" \
  "${KEEP[@]}"
