#!/usr/bin/env bash
# The web app's performance budget and the classroom's time to first frame.
#
#   bench/web.sh                 # release build, 10 loads each
#   bench/web.sh --bin target/debug/wemaster --loads 5
#
# 1. JavaScript shipped before the first paint of the catalogue: the entry script of
#    web/dist/index.html and every chunk it imports statically, gzipped (level 9, what the
#    server sends). The player (hls.js) and the classroom load on demand and are not counted.
# 2. Time to first frame of a live stream, median of N loads on loopback: the classroom page
#    (/lessons/{id}: app start, session restore, lesson and playback API calls, hls.js) and a
#    plain hls.js page on the same stream (same origin, no app), from navigation start to the
#    first video frame presented (requestVideoFrameCallback). ffmpeg publishes 720p30 H.264
#    with a 1 s GOP over RTMP.
# Private PostgreSQL/Redis under bench/.cache/data (ports 55441/56391). Results go to stdout;
# docs/benchmarks.md quotes them with the command.
set -euo pipefail
: "${WEMASTER_PG_PORT:=55441}"
: "${WEMASTER_REDIS_PORT:=56391}"
export WEMASTER_PG_PORT WEMASTER_REDIS_PORT
source "$(dirname "$0")/../scripts/lib.sh"
CACHE="$ROOT/bench/.cache"
DATA="$CACHE/data"
cd "$ROOT"
BIN=""
LOADS=10
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --loads) LOADS=$2; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done

build_web
if [ -z "$BIN" ]; then
  cargo build --release --locked --bin wemaster
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/wemaster"
fi

log "JavaScript before the catalogue's first paint"
node -e '
const fs = require("fs"), zlib = require("zlib"), path = require("path");
const dist = "web/dist", html = fs.readFileSync(path.join(dist, "index.html"), "utf8");
const files = new Set([...html.matchAll(/(?:src|href)="(\/assets\/[^"]+\.js)"/g)].map((m) => m[1]));
// Static imports of the entry chunk (Vite writes them as import statements at the top).
for (const f of [...files]) {
  const src = fs.readFileSync(path.join(dist, f), "utf8");
  for (const m of src.matchAll(/^import\s*["{][^;]*?from\s*"\.\/([^"]+\.js)"|import"\.\/([^"]+\.js)"/gm)) files.add("/assets/" + (m[1] || m[2]));
}
let raw = 0, gz = 0;
for (const f of files) {
  const b = fs.readFileSync(path.join(dist, f));
  raw += b.length; gz += zlib.gzipSync(b, { level: 9 }).length;
  console.log(`  ${f}: ${(b.length / 1024).toFixed(1)} KiB, ${(zlib.gzipSync(b, { level: 9 }).length / 1024).toFixed(1)} KiB gzip`);
}
console.log(`  total: ${(raw / 1024).toFixed(1)} KiB, ${(gz / 1024).toFixed(1)} KiB gzip (budget 200 KB)`);
'

start_private_postgres
start_private_redis
psql "$DATABASE_URL_ADMIN" -qc "DROP DATABASE IF EXISTS wemaster_bench_web" -c "CREATE DATABASE wemaster_bench_web" >/dev/null
WORK=$(mktemp -d)
SERVER_PID=""; FFMPEG_PID=""
trap 'kill $FFMPEG_PID $SERVER_PID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
HTTP_PORT=18080
RTMP_PORT=11935
export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/wemaster_bench_web"
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
export WEMASTER__HTTP__LISTEN="127.0.0.1:$HTTP_PORT" WEMASTER__HTTP__PUBLIC_URL="http://127.0.0.1:$HTTP_PORT"
export WEMASTER__RTMP__LISTEN="127.0.0.1:$RTMP_PORT" WEMASTER__WHIP__UDP_LISTEN="127.0.0.1:0"
export WEMASTER__STORAGE__LOCAL__ROOT="$WORK/objects" WEMASTER__MEDIA__SPOOL_DIR="$WORK/spool"
export WEMASTER__AUTH__KEYS_DIR="$WORK/keys" WEMASTER__LOG__LEVEL=warn
"$BIN" migrate >/dev/null
"$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$HTTP_PORT/healthz" && break; sleep 0.2; done
"$BIN" admin create-user --email teacher@bench.local --password 'bench teacher passphrase' --role teacher >/dev/null
"$BIN" admin create-user --email student@bench.local --password 'bench student passphrase' --role student >/dev/null
api() { curl -sf "http://127.0.0.1:$HTTP_PORT/api/v1$1" -H 'content-type: application/json' "${@:2}"; }
T=$(api /auth/login -d '{"email":"teacher@bench.local","password":"bench teacher passphrase"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
COURSE=$(api /courses -H "authorization: Bearer $T" -d '{"title":"Bench","summary":"s","description":"d","price":{"amount":0,"currency":"CNY"},"visibility":"published","tags":[]}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
STARTS=$(date -u -d '+1 min' +%Y-%m-%dT%H:%M:%SZ)
LESSON_JSON=$(api "/courses/$COURSE/lessons" -H "authorization: Bearer $T" -d "{\"title\":\"Bench\",\"kind\":\"broadcast\",\"starts_at\":\"$STARTS\",\"duration_minutes\":60,\"time_zone\":\"UTC\"}")
LESSON=$(echo "$LESSON_JSON" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
KEY=$(echo "$LESSON_JSON" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stream_key"])')
S=$(api /auth/login -d '{"email":"student@bench.local","password":"bench student passphrase"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
api "/courses/$COURSE/enrollments" -H "authorization: Bearer $S" -d '{}' >/dev/null
ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -c:v libx264 -preset veryfast -tune zerolatency -g 30 -pix_fmt yuv420p -b:v 2500k -c:a aac -b:a 128k \
  -f flv "rtmp://127.0.0.1:$RTMP_PORT/live/$KEY" &
FFMPEG_PID=$!
sleep 8
log "time to first frame, $LOADS loads each"
WM_BASE="http://127.0.0.1:$HTTP_PORT" WM_LESSON_ID="$LESSON" WM_LOADS="$LOADS" \
  WM_EMAIL=student@bench.local WM_PASSWORD='bench student passphrase' \
  node bench/web_first_frame.mjs
