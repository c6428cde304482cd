#!/usr/bin/env bash
# A five-minute look at pgsluice: start a throwaway PostgreSQL 15 in a temporary
# directory, put pgsluice in front of it in transaction mode with an unchanged
# pgbouncer.ini + userlist.txt, and run pgbench through it.
#
#   scripts/demo.sh          run, print the results, clean everything up
#   scripts/demo.sh --keep   leave PostgreSQL and pgsluice running to play with
#
# Needs: PostgreSQL 15 server programs (make deps) and target/release/pgsluice
# (cargo build --release); `make demo` does both first.
set -euo pipefail

keep=0
for arg in "$@"; do
    case "$arg" in
        --keep) keep=1 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
pgbin=${PGBIN:-/usr/lib/postgresql/15/bin}
binary="$repo/target/release/pgsluice"
for prog in initdb pg_ctl psql pgbench; do
    [[ -x "$pgbin/$prog" ]] || { echo "missing $pgbin/$prog: run 'make deps'" >&2; exit 1; }
done
[[ -x "$binary" ]] || { echo "missing $binary: run 'cargo build --release'" >&2; exit 1; }

work=$(mktemp -d /tmp/pgsluice-demo.XXXXXX)
chmod 755 "$work"
cd "$work" # a directory the postgres user can enter

# PostgreSQL refuses to run as root: then run it (and the pooler) as postgres.
# setpriv execs the program, so a background job's $! is the program's pid.
as_pg=()
if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || { echo "no 'postgres' OS user: run 'make deps'" >&2; exit 1; }
    chown postgres: "$work"
    as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --)
fi

# A port nobody listens on, below the ephemeral range.
free_port() {
    local port
    for _ in $(seq 1 200); do
        port=$((20000 + RANDOM % 10000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    echo "no free port found" >&2
    return 1
}
pg_port=$(free_port)
port=$(free_port)
while [[ "$port" == "$pg_port" ]]; do port=$(free_port); done

pooler_pid=
cleanup() {
    status=$?
    if [[ -n "$pooler_pid" ]] && kill -0 "$pooler_pid" 2>/dev/null; then
        kill -TERM "$pooler_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pooler_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pooler_pid" 2>/dev/null || true
    fi
    if [[ -f "$work/data/postmaster.pid" ]]; then
        "${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    exit "$status"
}
if ((keep == 0)); then
    trap cleanup EXIT
    trap 'exit 130' INT TERM
fi

echo "== PostgreSQL 15 on 127.0.0.1:$pg_port (data in $work/data)"
"${as_pg[@]}" "$pgbin/initdb" --no-sync -A trust -U postgres -E UTF8 --locale=C -D "$work/data" >"$work/initdb.log"
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/data" -l "$work/postgres.log" -w \
    -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1 -c max_connections=100" start >/dev/null
psql_admin() { "$pgbin/psql" -XAtq -v ON_ERROR_STOP=1 -h "$work" -p "$pg_port" -U postgres "$@"; }
psql_admin -d postgres -c "CREATE ROLE demo LOGIN PASSWORD 'demopass'"
psql_admin -d postgres -c "CREATE DATABASE demo OWNER demo"

echo "== pgsluice on 127.0.0.1:$port (transaction pooling, config in $work)"
cat >"$work/pgbouncer.ini" <<INI
[databases]
demo = host=127.0.0.1 port=$pg_port dbname=demo

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = $work
auth_type = md5
auth_file = $work/userlist.txt
pool_mode = transaction
default_pool_size = 10
max_client_conn = 200
admin_users = demo
INI
echo '"demo" "demopass"' >"$work/userlist.txt"
cp "$binary" "$work/pgsluice" # somewhere the postgres user can read it
if [[ $(id -u) -eq 0 ]]; then chown postgres: "$work/pgbouncer.ini" "$work/userlist.txt"; fi
chmod 600 "$work/userlist.txt"

"${as_pg[@]}" "$work/pgsluice" "$work/pgbouncer.ini" >"$work/pgsluice.log" 2>&1 &
pooler_pid=$!
for _ in $(seq 1 100); do
    if ! kill -0 "$pooler_pid" 2>/dev/null; then
        echo "pgsluice exited; its log:" >&2
        cat "$work/pgsluice.log" >&2
        exit 1
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.2
done
if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "pgsluice did not listen on $port within 20 s; its log:" >&2
    cat "$work/pgsluice.log" >&2
    exit 1
fi

export PGPASSWORD=demopass
bench() { "$pgbin/pgbench" -h 127.0.0.1 -p "$port" -U demo "$@" demo; }

echo "== pgbench -i -s 5 through pgsluice"
bench -i -s 5 -q
echo "== pgbench -c 20 -j 2 -T 10 -S through pgsluice (20 clients, 10 servers)"
bench -c 20 -j 2 -T 10 -S
servers=$(psql_admin -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE usename = 'demo'")
echo "== server connections of user demo now open: $servers (default_pool_size = 10)"

connect="PGPASSWORD=demopass $pgbin/psql -h 127.0.0.1 -p $port -U demo demo"
if ((keep)); then
    cat <<MSG

Left running (--keep). Connect through pgsluice:
    $connect
pgsluice log: $work/pgsluice.log
To stop:
    kill $pooler_pid
    ${as_pg[*]} $pgbin/pg_ctl -D $work/data -m fast stop
    rm -rf $work
MSG
else
    cat <<MSG

The psql command to connect through pgsluice (run scripts/demo.sh --keep to leave
it running; this run now stops PostgreSQL and pgsluice and removes $work):
    $connect
MSG
fi
