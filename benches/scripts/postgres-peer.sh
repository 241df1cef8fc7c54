#!/usr/bin/env bash
# The in-process target as DESIGN.md states it: durable create + pay
# lifecycles through `OrderCore` (`--bench core`) against the PostgreSQL peer
# (the same two transactions in raw SQL, driven by pgbench, no application
# server), alternated in ONE run on this machine.
#
#   benches/scripts/postgres-peer.sh [LIFECYCLES] [ROUNDS] [CLIENTS]
#
# LIFECYCLES per side and round (default 200000), ROUNDS alternated pairs
# (default 3), CLIENTS pgbench connections (default 16, the best of 8-64
# here). Both sides are durable and sustained: ordercore's clock stops when
# its write-behind has caught up, PostgreSQL's when a CHECKPOINT after the
# run has written its dirty pages (commits are fsynced, as PostgreSQL's
# defaults have it). The peer's CPU is the machine's busy time from
# /proc/stat (its backends, checkpointer and pgbench); ordercore's is the
# benchmark's process CPU over its measured part (the core's threads and
# the benchmark's own driver). Both count their client.
#
# Needs PostgreSQL's server binaries (Debian: `apt-get install
# postgresql-15`); run as root, the server runs as the `postgres` user.
set -euo pipefail

LIFECYCLES=${1:-200000}
ROUNDS=${2:-3}
CLIENTS=${3:-16}
cd "$(dirname "$0")/../.."
HERE=$PWD

# The first directory with a server in it: pg_config's (a client-only
# install has pg_config too), else Debian's newest.
bindir=
for dir in "$(pg_config --bindir 2>/dev/null || true)" $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
    if [[ -n "$dir" && -x "$dir/postgres" && -x "$dir/initdb" ]]; then bindir=$dir; break; fi
done
if [[ -z "$bindir" ]]; then
    echo "PostgreSQL's server binaries are not installed (apt-get install postgresql-15)" >&2
    exit 2
fi
pgbench=$(command -v pgbench || echo "$bindir/pgbench")

# initdb and the server refuse to run as root.
as_pg() {
    if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

work=$(mktemp -d /tmp/ordercore-peer.XXXXXX)
chmod 755 "$work"
[[ $(id -u) == 0 ]] && chown postgres "$work"
stop() {
    as_pg "$bindir/pg_ctl" -D "$work/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap stop EXIT

as_pg "$bindir/initdb" -D "$work/data" -A trust -U postgres >/dev/null
# Durable defaults (fsync, synchronous_commit, full_page_writes) stay on.
# The cache matches ordercore's sled cache. Tuned in the peer's favour:
# max_wal_size keeps a timed checkpoint out of the measured run, a 200 µs
# commit delay lets concurrent commits share a WAL flush (+5% here), and
# autovacuum looks every second for the hot SKU rows (schema.sql).
as_pg "$bindir/pg_ctl" -D "$work/data" -l "$work/log" -w -o \
    "-c listen_addresses='' -c unix_socket_directories=$work -c shared_buffers=256MB -c max_wal_size=8GB -c max_connections=200 -c commit_delay=200 -c commit_siblings=4 -c autovacuum_naptime=1s" \
    start >/dev/null
psql=(psql -h "$work" -U postgres -X -q -v ON_ERROR_STOP=1 postgres)

echo "building the core benchmark ..."
core=$(cargo bench -p ordercore-benches --bench core --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[[ -x "$core" ]] || { echo "no core benchmark binary" >&2; exit 1; }

# The machine's busy CPU time in µs (every core, user + system + irq).
busy_us() {
    awk '/^cpu / { printf "%.0f\n", ($2 + $3 + $4 + $7 + $8) * 1000000 / '"$(getconf CLK_TCK)"' }' /proc/stat
}
now_s() { date +%s.%N; }

per_client=$((LIFECYCLES / CLIENTS))
n_pg=$((per_client * CLIENTS))
pg_rates=() core_rates=() ratios=()
for round in $(seq 1 "$ROUNDS"); do
    "${psql[@]}" -f "$HERE/benches/postgres/schema.sql" 2>/dev/null
    "${psql[@]}" -c "VACUUM ANALYZE" -c "CHECKPOINT"
    cpu0=$(busy_us) t0=$(now_s)
    tps=$("$pgbench" -h "$work" -U postgres -n -M prepared -c "$CLIENTS" -j 2 -t "$per_client" \
        -f "$HERE/benches/postgres/lifecycle.sql" postgres 2>&1 |
        sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    "${psql[@]}" -c "CHECKPOINT"
    t1=$(now_s) cpu1=$(busy_us)
    paid=$("${psql[@]}" -At -c "SELECT count(*) FROM orders WHERE status = 1")
    [[ "$paid" == "$n_pg" ]] || { echo "PostgreSQL paid $paid of $n_pg orders" >&2; exit 1; }
    pg=$(awk -v n="$n_pg" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
    pg_cpu=$(awk -v n="$n_pg" -v c=$((cpu1 - cpu0)) 'BEGIN { printf "%.1f", c / n }')

    out=$("$core" "$LIFECYCLES")
    oc=$(sed -n 's/^(b) OrderCore.*sustained *\([0-9]*\) lifecycles.*/\1/p' <<<"$out")
    [[ -n "$oc" ]] || { echo "$out" >&2; exit 1; }
    oc_cpu=$(sed -n 's/^ *process CPU per lifecycle *\([0-9.]*\).*/\1/p' <<<"$out")
    # The benchmark's process CPU covers its measured part only (not its
    # raw sled ceiling or setup): the core's threads and its driver.
    ratio=$(awk -v a="$oc" -v b="$pg" 'BEGIN { printf "%.2f", a / b }')
    echo "round $round: PostgreSQL $pg lifecycles/s sustained (pgbench ${tps%.*} tps, $pg_cpu µs machine CPU each)," \
        "ordercore $oc/s ($oc_cpu µs process CPU each): ratio $ratio"
    pg_rates+=("$pg") core_rates+=("$oc") ratios+=("$ratio")
done

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo
echo "PostgreSQL peer, $CLIENTS clients: median $(median "${pg_rates[@]}") lifecycles/s"
echo "ordercore (--bench core):        median $(median "${core_rates[@]}") lifecycles/s"
echo "ratio ordercore / PostgreSQL:    median $(median "${ratios[@]}") (target >= 10)"
