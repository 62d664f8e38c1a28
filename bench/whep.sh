#!/usr/bin/env bash
# WHEP fan-out: the server's CPU per WebRTC viewer of one 720p30 2.5 Mbit/s stream (H.264 passed
# through, AAC → Opus once), with bench/whep-load (N viewers, each a real WebRTC peer: str0m
# with ICE, DTLS, SRTP, RTCP; frames depacketized and counted) on this machine.
#
#   bench/whep.sh                          # N = 0 50 100 200, 30 s each, release build
#   bench/whep.sh --viewers "0 200" --seconds 60 --runs 3
#   bench/whep.sh --viewers 20 --drop 0.02     # each viewer loses 2 % of its RTP: NACK/RTX at work
#
# For each N: the server's CPU over the window (N = 0 is the publisher alone: RTMP in, HLS
# out), viewers connected / stalled (a gap over 500 ms or under 90 % of the best frame rate),
# frames lost, the load tool's own CPU (it shares the 2 cores). One JSON line per run;
# docs/benchmarks.md quotes the results. Private PostgreSQL/Redis under bench/.cache/data-whep.
set -euo pipefail
: "${WEMASTER_PG_PORT:=55443}"
: "${WEMASTER_REDIS_PORT:=56393}"
export WEMASTER_PG_PORT WEMASTER_REDIS_PORT
source "$(dirname "$0")/../scripts/lib.sh"
DATA="$ROOT/bench/.cache/data-whep"
cd "$ROOT"
BIN=""
SECONDS_PER_RUN=30
VIEWERS="0 50 100 200"
RUNS=1
DROP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
    --viewers) VIEWERS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --drop) DROP=$2; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done

install_packages ffmpeg
if [ -z "$BIN" ]; then
  cargo build --release --locked --bin wemaster
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/wemaster"
fi
cargo build --release --locked -p wemaster-whep-load
LOAD="${CARGO_TARGET_DIR:-$ROOT/target}/release/whep-load"

start_private_postgres
start_private_redis
WORK=$(mktemp -d)
SERVER_PID=""; PUB_PID=""
trap 'kill $PUB_PID $SERVER_PID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
HTTP_PORT=18084
RTMP_PORT=11939
bench_serve "$HTTP_PORT" "$RTMP_PORT" wemaster_bench_whep "$WORK"
read -r ID KEY < <(bench_stream whep)

# 60 s of 720p30 made once, then published in a loop in real time (the encoder's CPU stays out
# of the window: it is not the server's).
SRC="$ROOT/bench/.cache/whep-720p30.flv"
if [ ! -s "$SRC" ]; then
  log "encoding the 720p30 2.5 Mbit/s source"
  mkdir -p "$(dirname "$SRC")"
  ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size=1280x720:rate=30:duration=60 \
    -f lavfi -i sine=frequency=440:sample_rate=48000:duration=60 \
    -c:v libx264 -preset veryfast -tune zerolatency -g 60 -keyint_min 60 -sc_threshold 0 \
    -b:v 2500k -maxrate 2500k -bufsize 2500k -pix_fmt yuv420p -c:a aac -b:a 128k -f flv "$SRC"
fi
ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$SRC" -c copy -f flv \
  "rtmp://127.0.0.1:$RTMP_PORT/live/$KEY" &
PUB_PID=$!
sleep 6

for run in $(seq "$RUNS"); do
  for n in $VIEWERS; do
    out=$("$LOAD" --url "http://127.0.0.1:$HTTP_PORT/whep/$ID" --viewers "$n" \
      --seconds "$SECONDS_PER_RUN" --ramp-ms 30 --server-pid "$SERVER_PID" --drop "$DROP")
    echo "{\"run\": $run, \"result\": $out}"
    sleep 3
  done
done
