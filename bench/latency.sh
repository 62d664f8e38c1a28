#!/usr/bin/env bash
# Glass-to-glass latency: the time from a frame being made by the publisher to the same frame
# being shown by Chromium, read from the picture (bench/clock_source.py draws the wall clock
# into every frame as a bit pattern; bench/latency.mjs decodes it from the <video> through a
# canvas at each presented frame). One encoder feeds WeMaster and nginx-rtmp at once (ffmpeg's
# tee muxer), so both get the same frames at the same moment.
#
#   bench/latency.sh                       # 60 s per case, release build
#   bench/latency.sh --seconds 20 --bin target/debug/wemaster
#   bench/latency.sh --seconds 600 --only wemaster-ll-hls   # one case (a 10-minute stall watch)
#
# Cases: WeMaster plain HLS (TS, hls.js defaults), WeMaster LL-HLS (hls.js lowLatencyMode),
# WeMaster WHEP (Chromium's RTCPeerConnection), nginx-rtmp HLS (hls.js defaults; 2 s fragments like ours). Source: 1280x720 30 fps H.264,
# 2 s GOP (x264 veryfast zerolatency, 2.5 Mbps) + AAC. Prints one JSON line per case: median,
# p90, max latency (ms), time to first frame, stalls. docs/benchmarks.md quotes the results.
# Private PostgreSQL/Redis under bench/.cache/data (ports 55442/56392).
set -euo pipefail
: "${WEMASTER_PG_PORT:=55442}"
: "${WEMASTER_REDIS_PORT:=56392}"
export WEMASTER_PG_PORT WEMASTER_REDIS_PORT
source "$(dirname "$0")/../scripts/lib.sh"
# Our own PostgreSQL/Redis files (a cluster runs on one port: other benches have their own).
DATA="$ROOT/bench/.cache/data-latency"
cd "$ROOT"
BIN=""
SECONDS_PER_CASE=60
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --seconds) SECONDS_PER_CASE=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done

install_packages ffmpeg nginx libnginx-mod-rtmp chromium
build_web
if [ -z "$BIN" ]; then
  cargo build --release --locked --bin wemaster
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/wemaster"
fi

start_private_postgres
start_private_redis
WORK=$(mktemp -d)
SERVER_PID=""; PUB_PID=""; NGINX_PID=""
trap 'kill $PUB_PID $SERVER_PID $NGINX_PID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
HTTP_PORT=18082
RTMP_PORT=11937
NGINX_RTMP=11938
NGINX_HTTP=18083
bench_serve "$HTTP_PORT" "$RTMP_PORT" wemaster_bench_latency "$WORK"
read -r ID KEY < <(bench_stream latency)

mkdir -p "$WORK/nginx/hls" "$WORK/nginx/tmp"
cat >"$WORK/nginx/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
worker_processes 1;
user root;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
rtmp { server { listen 127.0.0.1:$NGINX_RTMP; application live {
  live on; hls on; hls_path $WORK/nginx/hls; hls_fragment 2s; hls_playlist_length 12s; } } }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/tmp/body; proxy_temp_path $WORK/nginx/tmp/proxy;
  fastcgi_temp_path $WORK/nginx/tmp/fastcgi; uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
  scgi_temp_path $WORK/nginx/tmp/scgi;
  types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
  server { listen 127.0.0.1:$NGINX_HTTP;
    location /hls/ { alias $WORK/nginx/hls/; add_header Cache-Control no-cache; } } }
CONF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
NGINX_PID=$!

log "publishing the clock (1280x720 30 fps, 2 s GOP) to WeMaster and nginx-rtmp"
python3 bench/clock_source.py --size 1280x720 --fps 30 | ffmpeg -hide_banner -loglevel error \
  -f rawvideo -pix_fmt yuv420p -s 1280x720 -r 30 -i - \
  -re -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -map 0:v -map 1:a -c:v libx264 -preset veryfast -tune zerolatency -g 60 -keyint_min 60 \
  -sc_threshold 0 -b:v 2500k -maxrate 2500k -bufsize 2500k -pix_fmt yuv420p -c:a aac -b:a 128k \
  -flags +global_header \
  -f tee "[f=flv:onfail=ignore]rtmp://127.0.0.1:$RTMP_PORT/live/$KEY|[f=flv:onfail=ignore]rtmp://127.0.0.1:$NGINX_RTMP/live/clock" &
PUB_PID=$!
sleep 10

BASE="http://127.0.0.1:$HTTP_PORT/hls/live/$ID"
CASES=$(cat <<JSON
[
  {"name": "wemaster-hls", "url": "$BASE/index.m3u8", "hls": {}},
  {"name": "wemaster-ll-hls", "url": "$BASE/ll.m3u8", "hls": {"lowLatencyMode": true}},
  {"name": "wemaster-whep", "url": "http://127.0.0.1:$HTTP_PORT/whep/$ID", "whep": true},
  {"name": "nginx-rtmp-hls", "url": "http://127.0.0.1:$NGINX_HTTP/hls/clock.m3u8", "hls": {}}
]
JSON
)
# --only NAME: the cases of that name (both sources).
only() { python3 -c 'import json,sys; o=sys.argv[1]; print(json.dumps([c for c in json.load(sys.stdin) if not o or c["name"].split(" ")[0] == o]))' "$ONLY"; }
CASES=$(echo "$CASES" | only)
log "RTMP source: measuring $SECONDS_PER_CASE s per case"
[ "$CASES" = "[]" ] || WM_CASES="$CASES" WM_SECONDS="$SECONDS_PER_CASE" node bench/latency.mjs
kill $PUB_PID 2>/dev/null || true

# The WHIP source: Chromium publishes the clock from a canvas (same bit pattern) to a second
# stream; plain HLS and LL-HLS of that stream are measured while it publishes.
read -r ID2 KEY2 < <(bench_stream "latency whip")
BASE2="http://127.0.0.1:$HTTP_PORT/hls/live/$ID2"
CASES2=$(cat <<JSON
[
  {"name": "wemaster-hls (whip source)", "url": "$BASE2/index.m3u8", "hls": {}},
  {"name": "wemaster-ll-hls (whip source)", "url": "$BASE2/ll.m3u8", "hls": {"lowLatencyMode": true}},
  {"name": "wemaster-whep (whip source)", "url": "http://127.0.0.1:$HTTP_PORT/whep/$ID2", "whep": true}
]
JSON
)
CASES2=$(echo "$CASES2" | only)
[ "$CASES2" = "[]" ] && exit 0
log "WHIP source: measuring $SECONDS_PER_CASE s per case"
WM_CASES="$CASES2" WM_SECONDS="$SECONDS_PER_CASE" WM_WHIP_URL="http://127.0.0.1:$HTTP_PORT/whip/$ID2" \
  WM_WHIP_KEY="$KEY2" node bench/latency.mjs
