# Shared by the whole-process scripts in this folder: a throwaway PostgreSQL server, a Release
# build of pgspec, and waiting for ports. Source it after `set -euo pipefail`; it sets `work` (a
# temporary folder removed on exit) and registers the clean-up of what it starts.

PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d)
base=$((20000 + RANDOM % 20000))
pg_port=$base
cleanup_steps=()

as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

on_exit() { cleanup_steps+=("$1"); }

run_cleanup() {
    local i
    for ((i = ${#cleanup_steps[@]} - 1; i >= 0; i--)); do eval "${cleanup_steps[$i]}" || true; done
    as_postgres "$PGBIN/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap run_cleanup EXIT

wait_port() {
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    return 1
}

# start_server SCALE: initdb, start on $pg_port, pgbench -i at SCALE; user postgres, trust.
start_server() {
    if [ "$(id -u)" = 0 ]; then chown postgres "$work"; fi
    echo "server: $("$PGBIN/postgres" --version)" >&2
    as_postgres "$PGBIN/initdb" -D "$work/data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >/dev/null
    as_postgres "$PGBIN/pg_ctl" -D "$work/data" -l "$work/postgres.log" -w \
        -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=off" start >/dev/null
    "$PGBIN/pgbench" -i -q -s "$1" -h 127.0.0.1 -p "$pg_port" -U postgres postgres >/dev/null 2>&1
}

# pgspec_dll: prints the path of a Release build of pgspec ($PGSPEC_DLL if set).
pgspec_dll() {
    if [ -n "${PGSPEC_DLL:-}" ]; then echo "$PGSPEC_DLL"; return; fi
    dotnet build "$repo/src/PgSpec.Cli/PgSpec.Cli.csproj" -c Release -o "$work/pgspec" -nologo -v quiet >/dev/null
    echo "$work/pgspec/pgspec.dll"
}
