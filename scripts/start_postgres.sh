#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the tests and `make test` (not for production data:
# fsync is off), and prints the `export` lines that point the tests at it:
#
#   eval "$(scripts/start_postgres.sh)"
#
# Idempotent and fast when the server is already up. Installs Debian's `postgresql` if missing.
# The cluster lives in .leadsync/pg/ (git-ignored) and listens on 127.0.0.1 only, on
# LEADSYNC_PG_PORT (54329), with its unix socket inside the data directory. Stop it with
# scripts/stop_postgres.sh. Messages go to stderr so that stdout stays eval-able.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PGROOT="${LEADSYNC_PG_DIR:-$ROOT/.leadsync/pg}"
PORT="${LEADSYNC_PG_PORT:-54329}"
DATA="$PGROOT/data"
SOCKET="$PGROOT/run"
LOG="$PGROOT/server.log"
DB_USER=leadsync
DB_PASSWORD=leadsync  # a loopback-only test server; real deployments read secrets from the env
DB_NAME=leadsync

say() { echo "start_postgres.sh: $*" >&2; }

print_exports() {
    echo "export LEADSYNC_TEST_PG_URL=postgresql+psycopg://$DB_USER:$DB_PASSWORD@127.0.0.1:$PORT/$DB_NAME"
    # Dagster's own storage needs psycopg2 (dagster-postgres fails on psycopg 3).
    echo "export DAGSTER_PG_URL=postgresql+psycopg2://$DB_USER:$DB_PASSWORD@127.0.0.1:$PORT/$DB_NAME"
}

find_bindir() {
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2> /dev/null | sort -V | tail -1 || true)"
    if [ -z "$dir" ] && command -v pg_config > /dev/null; then
        dir="$(pg_config --bindir)"
    fi
    echo "$dir"
}

BIN="$(find_bindir)"
if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ]; then
    if ! command -v apt-get > /dev/null; then
        say "no PostgreSQL server binaries and no apt-get; install PostgreSQL yourself"
        exit 1
    fi
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo"
    fi
    say "installing PostgreSQL from the OS packages"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >&2
    BIN="$(find_bindir)"
fi

# initdb and postgres refuse to run as root: as root, run them as the `postgres` user the package
# creates; as anyone else, as ourselves.
if [ "$(id -u)" -eq 0 ]; then
    OWNER=postgres
    as_owner() { runuser -u postgres -- "$@"; }
else
    OWNER="$(id -un)"
    as_owner() { "$@"; }
fi

mkdir -p "$PGROOT"
chown "$OWNER" "$PGROOT"
# Two `make test`s starting at once (several worktrees, several helpers) must not both initdb.
exec 9> "$PGROOT/.start.lock"
flock 9

if as_owner "$BIN/pg_ctl" -D "$DATA" status > /dev/null 2>&1; then
    print_exports
    exit 0
fi

if [ ! -s "$DATA/PG_VERSION" ]; then
    rm -rf "$DATA"
    mkdir -p "$DATA"
    chown "$OWNER" "$DATA"
    # Local socket connections are trusted (only the owner can reach the socket directory);
    # TCP on loopback needs the password, as a real server would.
    as_owner "$BIN/initdb" -D "$DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 > "$PGROOT/initdb.log" 2>&1 \
        || { cat "$PGROOT/initdb.log" >&2; exit 1; }
fi
mkdir -p "$SOCKET"
chown "$OWNER" "$SOCKET"
chmod 700 "$SOCKET"
touch "$LOG"
chown "$OWNER" "$LOG"

# `9>&-`: the server must not inherit the start lock, or the next start would wait forever.
# Test settings: durability off (the cluster is disposable) makes the end-to-end tests' many
# small transactions cheap; enough connections for two workers plus Dagster's own pools.
if ! as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 30 start -o "-p $PORT -k $SOCKET \
    -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
    -c full_page_writes=off -c max_connections=200 -c timezone=UTC" > /dev/null 9>&-; then
    say "PostgreSQL did not start (is port $PORT taken?); its log:"
    tail -20 "$LOG" >&2
    exit 1
fi

psql_admin() {
    as_owner "$BIN/psql" -h "$SOCKET" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
        -qAt "$@"
}
if [ -z "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'")" ]; then
    # CREATEDB: the tests make a fresh database per test module.
    psql_admin -c "CREATE ROLE $DB_USER LOGIN CREATEDB PASSWORD '$DB_PASSWORD'" > /dev/null
fi
if [ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" ]; then
    psql_admin -c "CREATE DATABASE $DB_NAME OWNER $DB_USER" > /dev/null
fi
say "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT ($DATA)"
print_exports
