#!/usr/bin/env bash
# Stops the test Redis server scripts/start_redis.sh started (`--purge` also deletes its folder,
# .leadsync/redis/). Idempotent.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
REDISROOT="${LEADSYNC_REDIS_DIR:-$ROOT/.leadsync/redis}"
PORT="${LEADSYNC_REDIS_PORT:-63791}"
PIDFILE="$REDISROOT/redis.pid"

if command -v redis-cli > /dev/null \
    && [ "$(redis-cli -h 127.0.0.1 -p "$PORT" ping 2> /dev/null || true)" = "PONG" ]; then
    # NOSAVE: the server keeps no data worth writing out.
    redis-cli -h 127.0.0.1 -p "$PORT" shutdown nosave > /dev/null 2>&1 || true
    for _ in $(seq 50); do
        [ -f "$PIDFILE" ] || break
        sleep 0.1
    done
    echo "stop_redis.sh: stopped" >&2
fi
if [ "${1:-}" = "--purge" ]; then
    rm -rf "$REDISROOT"
fi
