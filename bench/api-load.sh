#!/usr/bin/env bash
# The API under a steady load: latency percentiles at a fixed request rate (oha, from crates.io,
# with latency correction: a request delayed by a slow one counts its wait) for the reads a
# classroom makes most — the catalogue page, a course page, a lesson's playback token — and for
# order creation (a sandbox wallet top-up: a row, a ledger hold, an event). Interleaved runs,
# medians reported; the server's CPU over each run from /proc.
#
#   bench/api-load.sh                         # 3 runs × 4 cases × 30 s, 500 req/s reads, release build
#   bench/api-load.sh --rate 500 --write-rate 100 --seconds 30 --runs 3 --bin target/release/wemaster
#
# Prints one JSON line per run and case, then the medians. docs/benchmarks.md quotes them.
# Private PostgreSQL/Redis under bench/.cache/data-api (ports 55452/56402). Login is left out
# on purpose (argon2 is slow by design; bench/login-memory.sh measures it).
set -euo pipefail
: "${WEMASTER_PG_PORT:=55452}"
: "${WEMASTER_REDIS_PORT:=56402}"
export WEMASTER_PG_PORT WEMASTER_REDIS_PORT
source "$(dirname "$0")/../scripts/lib.sh"
DATA="$ROOT/bench/.cache/data-api"
cd "$ROOT"
BIN=""
RATE=500
WRITE_RATE=100
SECONDS_PER_RUN=30
RUNS=3
CONNECTIONS=32
OHA_VERSION=1.10.0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --write-rate) WRITE_RATE=$2; shift 2 ;;
    --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) die "unknown option $1" ;;
  esac
done
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
pg_was_up=0; redis_was_up=0
pg_run "$(pg_bin)/pg_ctl" -D "$(pg_data_dir)" status >/dev/null 2>&1 && pg_was_up=1
redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && redis_was_up=1
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  [ "$redis_was_up" = 1 ] || redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  [ "$pg_was_up" = 1 ] || pg_run "$(pg_bin)/pg_ctl" -D "$(pg_data_dir)" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
start_private_postgres
start_private_redis
WEMASTER_LOCAL_CONFIG="" bench_serve 18480 11945 wemaster_apibench "$WORK"
log "server up (pid $SERVER_PID); seeding 200 published courses, a lesson, a student"

# 200 published courses (a catalogue page reads 20), one of them free with a lesson.
python3 - "$BENCH_API" "$BENCH_TOKEN" >"$WORK/ids" <<'PY'
import json, sys, urllib.request
api, token = sys.argv[1], sys.argv[2]
def call(method, path, body, tok=token):
    req = urllib.request.Request(api + path, data=json.dumps(body).encode(), method=method,
                                 headers={"content-type": "application/json", "authorization": f"Bearer {tok}"})
    return json.load(urllib.request.urlopen(req))
first = None
for i in range(200):
    c = call("POST", "/courses", {"title": f"Bench course {i}", "summary": "Ink and brush, week by week",
                                  "description": "# Welcome\n\nFour **live** lessons.", "visibility": "published",
                                  "price": {"amount": 0 if i == 0 else 4900, "currency": "CNY"},
                                  "tags": ["art", f"t{i % 10}"]})
    first = first or c["id"]
lesson = call("POST", f"/courses/{first}/lessons", {"title": "Live one", "kind": "broadcast",
                                                    "starts_at": "2030-01-01T09:00:00Z", "duration_minutes": 45})
print(first, lesson["id"])
PY
read -r COURSE LESSON <"$WORK/ids"
"$BIN" admin create-user --email student@bench.local --password 'bench student passphrase' --role student >/dev/null
STUDENT=$(curl -sf "$BENCH_API/auth/login" -H 'content-type: application/json' \
  -d '{"email":"student@bench.local","password":"bench student passphrase"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
curl -sf -o /dev/null "$BENCH_API/courses/$COURSE/enrollments" -H "authorization: Bearer $STUDENT" \
  -H 'content-type: application/json' -d '{}'
# Tokens live 15 minutes by default: long enough for 3 × 4 × 30 s.

cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
run_case() {
  local name=$1 rate=$2; shift 2
  local before after
  before=$(cpu_ticks)
  oha --no-tui --output-format json -z "${SECONDS_PER_RUN}s" -q "$rate" -c "$CONNECTIONS" \
    --latency-correction "$@" >"$WORK/oha.json"
  after=$(cpu_ticks)
  python3 - "$WORK/oha.json" "$name" "$rate" "$((after - before))" "$SECONDS_PER_RUN" "$(getconf CLK_TCK)" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
name, rate, ticks, secs, hz = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
p = r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
print(json.dumps({"case": name, "rate": rate, "rps": round(r["summary"]["requestsPerSec"], 1),
                  "success": r["summary"]["successRate"], "p50_ms": round(p["p50"] * 1000, 2),
                  "p99_ms": round(p["p99"] * 1000, 2), "p999_ms": round(p.get("p99.9", p["p99"]) * 1000, 2),
                  "cpu_pct": round(100 * ticks / hz / secs, 1), "status": codes}))
PY
}

for run in $(seq "$RUNS"); do
  log "run $run of $RUNS"
  run_case catalogue "$RATE" "$BENCH_API/courses?limit=20"
  run_case course "$RATE" "$BENCH_API/courses/$COURSE"
  run_case playback "$RATE" -H "authorization: Bearer $STUDENT" "$BENCH_API/lessons/$LESSON/playback"
  run_case order "$WRITE_RATE" -m POST -H "authorization: Bearer $STUDENT" -H 'content-type: application/json' \
    -d '{"kind":"wallet_topup","amount":{"amount":1000,"currency":"CNY"},"provider":"sandbox"}' "$BENCH_API/orders"
done | tee "$WORK/runs.jsonl"
python3 - "$WORK/runs.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for case in dict.fromkeys(r["case"] for r in rows):
    rs = [r for r in rows if r["case"] == case]
    med = lambda k: statistics.median(r[k] for r in rs)
    print(f"median of {len(rs)}: {case:9} rate {rs[0]['rate']}/s  p50 {med('p50_ms')} ms  "
          f"p99 {med('p99_ms')} ms  p99.9 {med('p999_ms')} ms  server CPU {med('cpu_pct')} %  "
          f"success {min(r['success'] for r in rs)}")
PY
