#!/usr/bin/env bash
# Starts a throwaway Redis server as the Celery broker and result backend for the tests and
# `make test` (no persistence: nothing in it outlives a test), and prints the `export` line that
# points the tests at it:
#
#   eval "$(scripts/start_redis.sh)"
#
# Idempotent and fast when the server is already up. Installs Debian's `redis-server` if missing.
# The server's directory is .leadsync/redis/ (git-ignored); it listens on 127.0.0.1 only, on
# LEADSYNC_REDIS_PORT (63791), never on the OS package's own 6379. Stop it with
# scripts/stop_redis.sh. Messages go to stderr so that stdout stays eval-able.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
REDISROOT="${LEADSYNC_REDIS_DIR:-$ROOT/.leadsync/redis}"
PORT="${LEADSYNC_REDIS_PORT:-63791}"
PIDFILE="$REDISROOT/redis.pid"
LOG="$REDISROOT/server.log"

say() { echo "start_redis.sh: $*" >&2; }

print_exports() {
    echo "export LEADSYNC_TEST_REDIS_URL=redis://127.0.0.1:$PORT/0"
}

ping() {
    [ "$(redis-cli -h 127.0.0.1 -p "$PORT" ping 2> /dev/null || true)" = "PONG" ]
}

if ! command -v redis-server > /dev/null || ! command -v redis-cli > /dev/null; then
    if ! command -v apt-get > /dev/null; then
        say "no redis-server and no apt-get; install Redis yourself"
        exit 1
    fi
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo"
    fi
    say "installing Redis from the OS packages"
    $SUDO apt-get update -qq >&2
    # The package may start its own service on 6379 where an init system runs; ours is separate.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >&2
fi

mkdir -p "$REDISROOT"
# Two `make test`s starting at once must not both start a server on the port.
exec 9> "$REDISROOT/.start.lock"
flock 9

if ping; then
    print_exports
    exit 0
fi

# No RDB snapshots, no AOF: a broker for tests, emptied with the server. `9>&-`: the daemon must
# not inherit the start lock, or the next start would wait forever.
redis-server --bind 127.0.0.1 --port "$PORT" --protected-mode yes \
    --dir "$REDISROOT" --daemonize yes --pidfile "$PIDFILE" --logfile "$LOG" \
    --save "" --appendonly no 9>&-
for _ in $(seq 50); do
    ping && break
    sleep 0.1
done
if ! ping; then
    say "Redis did not start (is port $PORT taken?); its log:"
    tail -20 "$LOG" >&2 || true
    exit 1
fi
say "Redis $(redis-server --version | awk '{print $3}' | cut -d= -f2) on 127.0.0.1:$PORT ($REDISROOT)"
print_exports
