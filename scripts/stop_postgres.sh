#!/usr/bin/env bash
# Stops the test PostgreSQL server scripts/start_postgres.sh started (its data stays in
# .leadsync/pg/ for the next start; `--purge` deletes it too). Idempotent.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PGROOT="${LEADSYNC_PG_DIR:-$ROOT/.leadsync/pg}"
DATA="$PGROOT/data"

BIN="$(ls -d /usr/lib/postgresql/*/bin 2> /dev/null | sort -V | tail -1 || true)"
if [ -z "$BIN" ] && command -v pg_config > /dev/null; then
    BIN="$(pg_config --bindir)"
fi
if [ "$(id -u)" -eq 0 ]; then
    as_owner() { runuser -u postgres -- "$@"; }
else
    as_owner() { "$@"; }
fi

if [ -n "$BIN" ] && [ -s "$DATA/PG_VERSION" ] \
    && as_owner "$BIN/pg_ctl" -D "$DATA" status > /dev/null 2>&1; then
    # fast: roll back open transactions and disconnect clients rather than wait for them.
    as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop > /dev/null
    echo "stop_postgres.sh: stopped" >&2
fi
if [ "${1:-}" = "--purge" ]; then
    rm -rf "$PGROOT"
fi
