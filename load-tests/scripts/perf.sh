#!/usr/bin/env bash
# The README's "Performance" table in one run, on this machine:
#   1. a bare actix-web handler that only parses the create body
#      (ordercore-echo), POST /v1/orders, closed loop, against
#   2. ordercore, durable, the same requests (JWT, 2 SKUs, unique ids),
#      sustained: the harness verifies everything after the run; three
#      pairs, their order alternated (E C, C E, E C), each pair's ratio and
#      the median printed, since one pair on this noisy machine can land
#      either side of a slow minute;
#   3. ordercore, relaxed, the same;
#   4. ordercore, durable, open loop at half of (2)'s median rate, three
#      runs: p99, with the share of CPU the hypervisor took in each, how
#      late the client started its sessions and the share of answers over
#      5 ms inside the server (its /metrics), and the median p99 of the
#      three; and the bare handler at the same rate (the client's own
#      latency);
#   5. full lifecycles (mixed scenario), durable and relaxed.
# Usage: load-tests/scripts/perf.sh [SECONDS] [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-20}
CONC=${2:-64}
OUT=target/perf
mkdir -p "$OUT"
cargo build --release -p ordercore -p ordercore-load >/dev/null
BIN=target/release
summary() { python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
o = r.get("overall") or {}
cpu = r.get("server_cpu_us_per_answer")
client = r.get("client_cpu_us_per_answer")
print(f'{r["throughput_per_s"]:.0f} answers/s, {r["sessions_per_s"]:.0f} sessions/s, '
      f'p50 {o.get("p50_us",0)/1000:.2f} ms, p99 {o.get("p99_us",0)/1000:.2f} ms, '
      f'errors {r["errors"]}, server CPU {cpu if cpu is None else round(cpu,1)} µs/answer, '
      f'client CPU {client if client is None else round(client,1)} µs/answer, '
      f'host steal {round(100 * (r.get("host_steal_share") or 0), 1)}%, '
      + (f'started late p99 {lag["p99_us"]/1000:.2f} ms max {lag["max_us"]/1000:.2f} ms, ' if (lag := r.get("client_start_lag")) else '')
      + (f'inside the server {100 * sl["over_5ms_share"]:.2f}% over 5 ms, ' if (sl := r.get("server_latency")) else '') +
      f'{"PASSED" if r["passed"] else "FAILED"}')
PY
}
rate_of() { python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["throughput_per_s"]))' "$1"; }

# The create scenario against a fresh bare handler: echo_run NAME LOAD-ARGS...
ECHO=""
trap 'kill $ECHO 2>/dev/null || true' EXIT
echo_run() {
  local name=$1 url
  shift
  "$BIN/ordercore-echo" 127.0.0.1:0 > "$OUT/$name.out" &
  ECHO=$!
  for _ in $(seq 50); do grep -q listening "$OUT/$name.out" && break; sleep 0.1; done
  url=$(sed -n 's/^listening on //p' "$OUT/$name.out" | head -1)
  "$BIN/ordercore-load" --url "$url" --jwt-secret x --payment-secret y --server-pid $ECHO \
    --scenario create --duration "$SECS" --no-verify --out "$OUT/$name" "$@" >/dev/null
  kill $ECHO
}

create_run() {
  "$BIN/ordercore-load" --spawn "$BIN/ordercore" --scenario create --concurrency "$CONC" \
    --duration "$SECS" --out "$OUT/$1" >/dev/null
}
RATIOS=""
for PAIR in 1 2 3; do
  if [ "$PAIR" = 2 ]; then
    create_run "create-durable-$PAIR"
    echo_run "echo-$PAIR" --concurrency "$CONC"
  else
    echo_run "echo-$PAIR" --concurrency "$CONC"
    create_run "create-durable-$PAIR"
  fi
  RATIO=$(python3 -c 'import json,sys; r=[json.load(open(f))["throughput_per_s"] for f in sys.argv[1:]]; print(f"{r[1]/r[0]:.3f}")' \
    "$OUT/echo-$PAIR/report.json" "$OUT/create-durable-$PAIR/report.json")
  RATIOS="$RATIOS $RATIO"
  echo "1. bare handler (parse only), pair $PAIR: $(summary "$OUT/echo-$PAIR/report.json")"
  echo "2. ordercore create, durable, pair $PAIR: $(summary "$OUT/create-durable-$PAIR/report.json")"
  echo "   ratio, pair $PAIR: $RATIO"
done
MEDIAN_PAIR=$(python3 -c 'import json,sys
runs = sorted((json.load(open(f"{sys.argv[1]}/create-durable-{i}/report.json"))["throughput_per_s"], i) for i in (1, 2, 3))
print(runs[1][1])' "$OUT")
rm -rf "$OUT/create-durable" && cp -r "$OUT/create-durable-$MEDIAN_PAIR" "$OUT/create-durable"
echo "   ratios:$RATIOS; median $(echo $RATIOS | tr ' ' '\n' | sort -n | sed -n 2p)"

"$BIN/ordercore-load" --spawn "$BIN/ordercore" --durability relaxed --scenario create \
  --concurrency "$CONC" --duration "$SECS" --out "$OUT/create-relaxed" >/dev/null
echo "3. ordercore create, relaxed:     $(summary "$OUT/create-relaxed/report.json")"

# Three runs: on a shared machine one run's tail can be the host's (see
# each run's steal share). Half of the median pair's create rate.
HALF=$(( $(rate_of "$OUT/create-durable/report.json") / 2 ))
for RUN in 1 2 3; do
  "$BIN/ordercore-load" --spawn "$BIN/ordercore" --scenario create --rate "$HALF" \
    --duration "$SECS" --out "$OUT/create-open-$RUN" >/dev/null
  echo "4. durable, open loop at $HALF/s (run $RUN):  $(summary "$OUT/create-open-$RUN/report.json")"
done
python3 - "$OUT" <<'PY'
import json, sys
p99 = [json.load(open(f"{sys.argv[1]}/create-open-{i}/report.json"))["overall"]["p99_us"] / 1000
       for i in (1, 2, 3)]
print(f'   p99s: {" / ".join(f"{p:.2f}" for p in p99)} ms; median {sorted(p99)[1]:.2f} ms (target <= 5)')
PY

# The client's own share of that latency: the bare handler at the same rate.
echo_run echo-open --rate "$HALF"
echo "4b. bare handler, open loop at $HALF/s: $(summary "$OUT/echo-open/report.json")"

"$BIN/ordercore-load" --spawn "$BIN/ordercore" --scenario lifecycle --concurrency "$CONC" \
  --duration "$SECS" --out "$OUT/lifecycle-durable" >/dev/null
echo "5. lifecycles, durable:           $(summary "$OUT/lifecycle-durable/report.json")"

"$BIN/ordercore-load" --spawn "$BIN/ordercore" --durability relaxed --scenario lifecycle \
  --concurrency "$CONC" --duration "$SECS" --out "$OUT/lifecycle-relaxed" >/dev/null
echo "6. lifecycles, relaxed:           $(summary "$OUT/lifecycle-relaxed/report.json")"
