# Shared by scripts/run and scripts/test: install what a fresh Debian/Ubuntu machine lacks and
# start private PostgreSQL/Redis under .data/ when none are configured. Source it; don't run it.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA="$ROOT/.data"
PG_PORT=${WEMASTER_PG_PORT:-55432}
REDIS_PORT=${WEMASTER_REDIS_PORT:-56379}

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root (or sudo) to run: $*"; fi
}

# Debian packages the service needs to build and run.
BUILD_PACKAGES=(build-essential pkg-config cmake libssl-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev)
RUNTIME_PACKAGES=(gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools postgresql postgresql-client redis-server curl ca-certificates)

# install_packages PKG...: apt-get install only those not installed yet.
install_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get: install them by hand"
  log "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_rust() {
  command -v cargo >/dev/null && return 0
  [ -x "$HOME/.cargo/bin/cargo" ] && { export PATH="$HOME/.cargo/bin:$PATH"; return 0; }
  die "no Rust toolchain: install rustup (https://rustup.rs) and Rust 1.95 or newer"
}

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$d" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return; fi
  dirname "$(command -v pg_ctl || die 'pg_ctl not found: install postgresql')"
}

# PostgreSQL refuses to run as root: run its tools as the postgres user, with a data directory
# that user can reach (a checkout under /root is not reachable, so fall back to /var/tmp).
pg_data_dir() {
  local dir="$DATA/pg"
  if [ "$(id -u)" -eq 0 ]; then
    mkdir -p "$DATA"
    if ! runuser -u postgres -- test -x "$DATA" 2>/dev/null; then
      dir="/var/tmp/wemaster-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)/pg"
    fi
  fi
  echo "$dir"
}

pg_run() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# start_private_postgres: a cluster on 127.0.0.1:$PG_PORT, trust auth, user postgres. Reused.
start_private_postgres() {
  local bin dir
  bin=$(pg_bin)
  dir=$(pg_data_dir)
  if [ ! -s "$dir/PG_VERSION" ]; then
    log "creating a private PostgreSQL cluster in $dir"
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$(dirname "$dir")" "$dir"
    pg_run "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  if ! pg_run "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    pg_run "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-p $PG_PORT -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=${WEMASTER_PG_FSYNC:-on}" start >/dev/null \
      || { tail -n 20 "$dir/server.log" >&2; die "PostgreSQL did not start"; }
  fi
  export DATABASE_URL_ADMIN="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
}

# start_private_redis: redis-server on 127.0.0.1:$REDIS_PORT with its files in .data/redis.
start_private_redis() {
  mkdir -p "$DATA/redis"
  if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then return 0; fi
  log "starting Redis on 127.0.0.1:$REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --dir "$DATA/redis" \
    --pidfile "$DATA/redis/redis.pid" --logfile "$DATA/redis/redis.log" --save "${WEMASTER_REDIS_SAVE:-3600 1}" \
    --appendonly no >/dev/null
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "Redis did not start (see $DATA/redis/redis.log)"
}

# start_test_redis_cluster FIRST_PORT: a Redis Cluster of 3 masters (no replicas) on 127.0.0.1,
# ports FIRST_PORT..FIRST_PORT+2 (cluster bus: +10, below the ephemeral range too), files in .data/redis-cluster/. Made
# afresh when it is not a healthy cluster of those 3 nodes; nothing is kept on disk.
start_test_redis_cluster() {
  local first=$1 ports=() p
  for i in 0 1 2; do ports+=($((first + i))); done
  if [ "$(redis-cli -p "$first" cluster info 2>/dev/null | tr -d '\r' | grep -c -e '^cluster_state:ok' -e '^cluster_known_nodes:3')" = 2 ]; then
    return 0
  fi
  log "starting a Redis Cluster of 3 masters on 127.0.0.1:${ports[0]}-${ports[2]}"
  for p in "${ports[@]}"; do
    redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true
  done
  rm -rf "$DATA/redis-cluster"
  for p in "${ports[@]}"; do
    mkdir -p "$DATA/redis-cluster/$p"
    redis-server --bind 127.0.0.1 --port "$p" --daemonize yes --dir "$DATA/redis-cluster/$p" \
      --cluster-enabled yes --cluster-port $((p + 10)) --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
      --pidfile "$DATA/redis-cluster/$p/redis.pid" --logfile "$DATA/redis-cluster/$p/redis.log" \
      --save "" --appendonly no >/dev/null
  done
  for p in "${ports[@]}"; do
    for _ in $(seq 50); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
  done
  redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >"$DATA/redis-cluster/create.log" 2>&1 ||
    { cat "$DATA/redis-cluster/create.log" >&2; die "the Redis Cluster was not created"; }
  for _ in $(seq 100); do
    redis-cli -p "$first" cluster info 2>/dev/null | tr -d '\r' | grep -q '^cluster_state:ok' && return 0
    sleep 0.1
  done
  die "the Redis Cluster did not reach cluster_state:ok (see $DATA/redis-cluster/)"
}

# ensure_database NAME: create it in the private cluster if missing.
ensure_database() {
  local name=$1
  if ! psql "$DATABASE_URL_ADMIN" -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1; then
    psql "$DATABASE_URL_ADMIN" -qc "CREATE DATABASE \"$name\"" >/dev/null
  fi
}

# secret_file NAME: a random secret kept in .data/, created once.
secret_file() {
  local f="$DATA/secrets/$1"
  if [ ! -s "$f" ]; then
    mkdir -p "$DATA/secrets" && chmod 700 "$DATA/secrets"
    (umask 077; head -c 48 /dev/urandom | base64 | tr -d '\n=/+' > "$f")
  fi
  echo "$f"
}

# ensure_node: Node.js and npm, from Debian's packages when missing. The web app builds with
# Debian 12's Node 18.19 as well as newer ones.
ensure_node() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    install_packages nodejs npm
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge 18 ] || die "Node.js 18 or newer is needed to build the web app (found $(node --version))"
}

# build_web: install the web app's packages when the lockfile changed (npm ci), then build it
# into web/dist (type check + Vite). The server embeds web/dist (release) or reads it (debug).
build_web() {
  ensure_node
  (
    cd "$ROOT/web"
    if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
      log "installing the web app's packages (npm ci)"
      npm ci --no-audit --no-fund --loglevel=error
    fi
    log "building the web app"
    npm run --silent build
  )
}

# bench_serve HTTP_PORT RTMP_PORT DB WORK: "$BIN serve" for a benchmark, on the private
# PostgreSQL/Redis (start them first), with a fresh database DB and its files and log under
# WORK; WebRTC on a free UDP port. Sets SERVER_PID, BENCH_API (…/api/v1) and BENCH_TOKEN (a
# teacher's access token).
bench_serve() {
  local http=$1 rtmp=$2 db=$3 work=$4
  psql "$DATABASE_URL_ADMIN" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
  export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/$db"
  export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  export WEMASTER__HTTP__LISTEN="127.0.0.1:$http" WEMASTER__HTTP__PUBLIC_URL="http://127.0.0.1:$http"
  export WEMASTER__RTMP__LISTEN="127.0.0.1:$rtmp" WEMASTER__WHIP__UDP_LISTEN="127.0.0.1:0"
  export WEMASTER__STORAGE__LOCAL__ROOT="$work/objects" WEMASTER__MEDIA__SPOOL_DIR="$work/spool"
  export WEMASTER__AUTH__KEYS_DIR="$work/keys" WEMASTER__LOG__LEVEL="${WEMASTER__LOG__LEVEL:-warn}"
  "$BIN" migrate >/dev/null
  "$BIN" serve >"$work/server.log" 2>&1 &
  SERVER_PID=$!
  local up=""
  for _ in $(seq 150); do
    curl -sf -o /dev/null "http://127.0.0.1:$http/healthz" && { up=1; break; }
    sleep 0.2
  done
  [ -n "$up" ] || { tail -n 20 "$work/server.log" >&2; die "the server did not come up"; }
  "$BIN" admin create-user --email teacher@bench.local --password 'bench teacher passphrase' --role teacher >/dev/null
  BENCH_API="http://127.0.0.1:$http/api/v1"
  BENCH_TOKEN=$(curl -sf "$BENCH_API/auth/login" -H 'content-type: application/json' \
    -d '{"email":"teacher@bench.local","password":"bench teacher passphrase"}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
}

# bench_input DIR: prints the path of the benches' common input, encoded once into DIR:
# 720p30 H.264 High 2.5 Mbit/s with a 2 s GOP + AAC 44.1 kHz, 60 s, FLV. Noise keeps the picture
# hard enough for x264 to really spend 2.5 Mbit/s; no scene-cut keyframes, so every GOP is
# exactly 60 frames (2 s).
bench_input() {
  local input="$1/input-720p30-2500k-g60.flv"
  mkdir -p "$1"
  if [ ! -s "$input" ]; then
    log "encoding the input once: $input"
    ffmpeg -hide_banner -loglevel error -y \
      -f lavfi -i "testsrc2=size=1280x720:rate=30,noise=alls=12:allf=t" \
      -f lavfi -i "sine=frequency=440:sample_rate=44100" \
      -t 60 -map 0:v -map 1:a \
      -c:v libx264 -profile:v high -preset veryfast -pix_fmt yuv420p \
      -b:v 2500k -maxrate 2500k -bufsize 5000k -g 60 -keyint_min 60 -sc_threshold 0 \
      -c:a aac -b:a 128k -ar 44100 -ac 2 \
      -f flv "$input.tmp" >&2
    mv "$input.tmp" "$input"
  fi
  echo "$input"
}

# bench_stream TITLE: a public live stream without recording; prints "<id> <stream key>".
bench_stream() {
  curl -sf "$BENCH_API/live-streams" -H 'content-type: application/json' \
    -H "authorization: Bearer $BENCH_TOKEN" \
    -d "{\"title\":\"$1\",\"visibility\":\"public\",\"record\":false}" \
    | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["id"], s["stream_key"])'
}

# ensure_pgbouncer: sets PGBOUNCER to a PgBouncer that handles prepared statements in transaction
# pooling (≥ 1.21, `max_prepared_statements`). Debian 12 ships 1.18, which cannot (sqlx names its
# statements per client connection: "prepared statement sqlx_s_N already exists"), so Debian 13's
# 1.24.1 is built from its source package (checksum pinned), once, into .data/.
PGBOUNCER_VERSION=1.24.1
PGBOUNCER_SHA256=da72a3aba13072876d055a3e58dd4aba4a5de4ed6148e73033185245598fd3e0
ensure_pgbouncer() {
  PGBOUNCER="$DATA/pgbouncer-$PGBOUNCER_VERSION/bin/pgbouncer"
  [ -x "$PGBOUNCER" ] && return 0
  install_packages build-essential pkg-config libssl-dev libevent-dev
  log "building PgBouncer $PGBOUNCER_VERSION from Debian 13's source package"
  local src tarball="pgbouncer_$PGBOUNCER_VERSION.orig.tar.gz"
  src=$(mktemp -d)
  curl -fsSL -o "$src/$tarball" "https://deb.debian.org/debian/pool/main/p/pgbouncer/$tarball"
  echo "$PGBOUNCER_SHA256  $src/$tarball" | sha256sum -c --quiet - || die "$tarball: checksum mismatch"
  tar -xzf "$src/$tarball" -C "$src"
  (cd "$src/pgbouncer-$PGBOUNCER_VERSION" &&
    ./configure --prefix="$DATA/pgbouncer-$PGBOUNCER_VERSION" --without-cares --without-pam \
      --without-ldap --without-systemd >"$src/configure.log" 2>&1 &&
    make -j"$(nproc)" >"$src/make.log" 2>&1 && make install >/dev/null) ||
    { tail -n 20 "$src"/*.log >&2; die "building PgBouncer failed"; }
  rm -rf "$src"
  [ -x "$PGBOUNCER" ] || die "PgBouncer was not installed at $PGBOUNCER"
}
