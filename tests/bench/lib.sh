# Shared by the whole-process scripts in this folder: a throwaway PostgreSQL server, a Release
# build of pgspec, waiting for ports, stopping servers and measuring their CPU time. Source it after `set -euo pipefail`; it sets `work` (a
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

# start_server SCALE: initdb, start on $pg_port, pgbench -i at SCALE (none when 0); user postgres,
# trust.
start_server() {
    if [ "$(id -u)" = 0 ]; then chown postgres "$work"; fi
    echo "server: $("$PGBIN/postgres" --version)" >&2
    as_postgres "$PGBIN/initdb" -D "$work/data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >/dev/null
    as_postgres "$PGBIN/pg_ctl" -D "$work/data" -l "$work/postgres.log" -w \
        -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=off" start >/dev/null
    if [ "$1" != 0 ]; then
        "$PGBIN/pgbench" -i -q -s "$1" -h 127.0.0.1 -p "$pg_port" -U postgres postgres >/dev/null 2>&1
    fi
}

# pgspec_dll: prints the path of a Release build of pgspec ($PGSPEC_DLL if set).
pgspec_dll() {
    if [ -n "${PGSPEC_DLL:-}" ]; then echo "$PGSPEC_DLL"; return; fi
    dotnet build "$repo/src/PgSpec.Cli/PgSpec.Cli.csproj" -c Release -o "$work/pgspec" -nologo -v quiet >/dev/null
    echo "$work/pgspec/pgspec.dll"
}

# wait_started NAME PORT PID SECONDS LOG: waits until something listens on PORT, failing early
# with the end of LOG when PID has exited (a server that does not start, a build that fails).
wait_started() {
    local deadline=$((SECONDS + $4))
    while ! (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; do
        if ! kill -0 "$3" 2>/dev/null; then
            echo "$1 exited before listening on port $2; the end of its output:" >&2
            tail -n 30 "$5" >&2
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "$1 does not listen on port $2 after $4 s" >&2
            return 1
        fi
        sleep 0.1
    done
}

# stop_session PID: SIGTERM to the session (process group) that `setsid` made PID lead, so that
# children such as the program `dotnet run` starts stop too; SIGKILL after 10 s.
stop_session() {
    kill -TERM -- "-$1" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 -- "-$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# tree_cpu PID: "TICKS PROCESSES": the user + system CPU time of PID and all its descendants
# (with what their exited children used), and how many processes that is. Given the postmaster,
# that covers all of PostgreSQL: an exited backend's time is in the postmaster's cutime/cstime
# once it has been reaped.
tree_cpu() {
    python3 - "$1" <<'PY'
import os, sys
procs = {}
for entry in os.listdir("/proc"):
    if not entry.isdigit():
        continue
    try:
        with open(f"/proc/{entry}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        continue  # exited meanwhile
    # after the name: state ppid ... utime stime cutime cstime (fields 11 to 14 counting from 0)
    procs[int(entry)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
tree, grew = {int(sys.argv[1])}, True
while grew:
    grew = False
    for pid, (ppid, _) in procs.items():
        if ppid in tree and pid not in tree:
            tree.add(pid)
            grew = True
print(sum(procs[p][1] for p in tree if p in procs), sum(1 for p in tree if p in procs))
PY
}

# machine: the total, steal and idle jiffies of all CPUs.
machine() { awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print t, $9, $5 + $6 }' /proc/stat; }
