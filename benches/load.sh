#!/usr/bin/env bash
# Load benchmark: jitgate against a naive webhook (examples/baseline.rs: parses the review
# into a serde_json::Value, answers a fixed allow), both over the same TLS, measured as
# ratios in one run on this machine.
#
#   benches/load.sh            (DURATION=5 seconds per run by default;
#                               SCENARIOS="h1-c16 h2-c16" runs only those, and nothing else)
#   benches/load.sh memory     (only start-to-ready and resident memory at 0, 10 000 and
#                               100 000 approvals; RUNS=3 for three interleaved rounds)
#
# Each server is pinned to core 0 with one worker thread, the load generator to core 1.
# Runs are interleaved baseline/jitgate/baseline/jitgate so that drift on the machine hits
# both alike. jitgate runs the release build with the shipped policies, 10 000 approvals and
# --audit-log on (in a directory of its own); the HTTP/1.1 load mixes ungated, denied and
# approved requests.
#
# jitgate's stdout (where its records go besides the log) is a pipe, as in a container: a FIFO
# drained by `cat >/dev/null`, pinned to core 0 with the server, and the reader's CPU is
# counted in jitgate's (the "jit us/r" column; "rdr us/r" shows the reader's share alone).
# JITGATE_STDOUT=null sends it to /dev/null instead, which jitgate does not write at all.
# Only 127.0.0.1 is ever targeted.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}
BASE_PORT=${BASE_PORT:-19443}
JIT_PORT=${JIT_PORT:-19444}
JITGATE_STDOUT=${JITGATE_STDOUT:-pipe}   # pipe (a FIFO drained by cat on core 0) or null
case "$JITGATE_STDOUT" in pipe|null) ;; *) echo "JITGATE_STDOUT is pipe or null" >&2; exit 2;; esac

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need h2load || ! need taskset; then
  echo "installing wrk, nghttp2-client (h2load) and util-linux (taskset)..." >&2
  apt-get update -qq >/dev/null && apt-get install -y -qq wrk nghttp2-client util-linux >/dev/null
fi

cargo build --release --locked --quiet --bin jitgate --example baseline
target=${CARGO_TARGET_DIR:-target}
JITGATE=${JITGATE_BIN:-$target/release/jitgate}   # JITGATE_BIN: another build, for an A/B (POLICIES: its own policies)
BASELINE=$target/release/examples/baseline

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# Certificates, policies, approvals and request bodies.
# shellcheck source=benches/common/setup.sh
. benches/common/setup.sh
cat > "$work/mix.lua" <<'LUA'
local dir = os.getenv("BODIES")
local bodies = {}
for _, name in ipairs({"ungated", "denied", "approved"}) do
  local f = assert(io.open(dir .. "/" .. name .. ".json", "rb"))
  bodies[#bodies + 1] = f:read("*a")
  f:close()
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local i = 0
request = function()
  i = i + 1
  return wrk.format(nil, "/validate?timeout=10s", nil, bodies[(i % #bodies) + 1])
end
LUA
export BODIES="$work"

ready() { # PORT: wait until /readyz answers 200 (or POST /validate for the baseline)
  for _ in $(seq 1 500); do
    if curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$1/readyz" 2>/dev/null | grep -q 200 \
       || curl -sk -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary @"$work/denied.json" \
            -w '%{http_code}' "https://127.0.0.1:$1/validate" 2>/dev/null | grep -q 200; then
      return 0
    fi
    sleep 0.02
  done
  echo "server on port $1 did not come up" >&2; exit 1
}
cpu_ticks() { # PID...: user + system ticks of them all
  local t=0 p
  for p in "$@"; do t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat") )); done
  echo "$t"
}
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

start_jitgate() { # APPROVALS-COUNT PORT -> sets JPID (and RPID, the stdout reader, or "")
  local out=/dev/null
  RPID=""
  if [ "$JITGATE_STDOUT" = pipe ]; then
    out="$work/stdout.fifo"
    rm -f "$out"; mkfifo "$out"
    taskset -c 0 cat "$out" >/dev/null &
    RPID=$!
    pids+=("$RPID")
  fi
  TOKIO_WORKER_THREADS=1 taskset -c 0 "$JITGATE" serve --listen "127.0.0.1:$2" \
    --tls-cert "$work/certs/tls.crt" --tls-key "$work/certs/tls.key" --policies "$work/policies" \
    --approvals-file "$work/approvals-$1.yaml" --audit-log "$work/log/audit.jsonl" --log-format text \
    >"$out" 2>>"$work/jitgate.log" &
  JPID=$!
  pids+=("$JPID")
}
stop_jitgate() {
  kill "$JPID"; wait "$JPID" 2>/dev/null || true
  if [ -n "$RPID" ]; then wait "$RPID" 2>/dev/null || true; fi
}

# Start-to-ready and resident memory of jitgate alone, file mode, at 0, 10 000 and 100 000
# approvals (RUNS times each, interleaved; `benches/load.sh memory` prints only this).
startup_table() {
  echo
  echo "# jitgate alone, file mode (approvals file, shipped policies, --audit-log on)"
  printf "%-10s %14s %14s\n" approvals "start->ready" "resident MiB"
  for _ in $(seq 1 "${RUNS:-1}"); do
    for n in 0 10000 100000; do
      start=$(date +%s.%N)
      start_jitgate "$n" "$JIT_PORT"
      ready "$JIT_PORT"
      end=$(date +%s.%N)
      sleep 0.5
      python3 -c "print(f'{$n:<10} {($end - $start) * 1000:>12.0f}ms {$(rss_kib "$JPID") / 1024:>14.1f}')"
      stop_jitgate
    done
  done
}
if [ "${1:-}" = memory ]; then
  startup_table
  exit 0
fi

TOKIO_WORKER_THREADS=1 taskset -c 0 "$BASELINE" "127.0.0.1:$BASE_PORT" "$work/certs/tls.crt" "$work/certs/tls.key" &
BPID=$!; pids+=("$BPID")
start_jitgate 10000 "$JIT_PORT"
ready "$BASE_PORT"; ready "$JIT_PORT"

# wrk's report and the server's CPU ticks -> "requests rps p50_us p99_us cpu_ticks".
wrk_figures() {
  python3 - "$1" "$2" <<'PY'
import re, sys
out, ticks = sys.argv[1], sys.argv[2]
def us(v):
    n, u = float(re.match(r"([\d.]+)", v).group(1)), re.sub(r"[\d.]", "", v)
    return n * {"us": 1, "ms": 1000, "s": 1e6}[u]
reqs = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
p50 = us(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)); p99 = us(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
if re.search(r"Non-2xx or 3xx responses|Socket errors", out):
    print("wrk reported errors:", out, file=sys.stderr)
print(reqs, rps, p50, p99, ticks)
PY
}

# One run: prints "requests rps p50_us p99_us cpu_ticks reader_ticks" (cpu_ticks: the
# server's and its stdout reader's; reader_ticks: the reader's alone).
run() { # PID PORT SCENARIO [READER-PID]
  local pid=$1 port=$2 scenario=$3 reader=${4:-} before after rbefore out
  rbefore=$(cpu_ticks $reader)
  before=$(cpu_ticks "$pid" $reader)
  case "$scenario" in
    h1-c*)
      out=$(taskset -c 1 wrk -t1 -c"${scenario#h1-c}" -d"${DURATION}s" --latency -s "$work/mix.lua" \
              "https://127.0.0.1:$port/validate")
      after=$(cpu_ticks "$pid" $reader)
      echo "$(wrk_figures "$out" "$((after - before))") $(( $(cpu_ticks $reader) - rbefore ))"
      ;;
    churn-c*)
      out=$(taskset -c 1 wrk -t1 -c"${scenario#churn-c}" -d"${DURATION}s" --latency -H "Connection: close" \
              -s "$work/mix.lua" "https://127.0.0.1:$port/validate")
      after=$(cpu_ticks "$pid" $reader)
      echo "$(wrk_figures "$out" "$((after - before))") $(( $(cpu_ticks $reader) - rbefore ))"
      ;;
    h2-c*)
      rm -f "$work/h2.log"
      out=$(taskset -c 1 h2load -c"${scenario#h2-c}" -m1 -n "$((DURATION * 6000))" \
              --data="$work/denied.json" -H 'content-type: application/json' --log-file="$work/h2.log" \
              "https://127.0.0.1:$port/validate?timeout=10s" 2>&1)
      after=$(cpu_ticks "$pid" $reader)
      r=$(python3 - "$out" "$((after - before))" "$work/h2.log" <<'PY'
import re, sys
out, ticks, log = sys.argv[1], sys.argv[2], sys.argv[3]
durations = sorted(int(l.split()[2]) for l in open(log) if l.strip() and l.split()[1] == "200")
reqs = int(re.search(r"requests: .*?(\d+) succeeded", out).group(1))
rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
q = lambda f: durations[min(len(durations) - 1, int(f * len(durations)))]
print(reqs, rps, q(0.50), q(0.99), ticks)
PY
)
      echo "$r $(( $(cpu_ticks $reader) - rbefore ))"
      ;;
  esac
}

echo "# jitgate / baseline, $(date -u +%Y-%m-%d), $(nproc) cores, ${DURATION}s per run, interleaved A/B/A/B"
echo "# (HTTP/1.1 and churn: mix of ungated, denied, approved; HTTP/2: denied)"
echo "# (jitgate's stdout: $JITGATE_STDOUT; jit us/r includes its stdout reader, rdr us/r is the reader alone)"
printf "%-10s %12s %12s %9s %9s %9s %9s %9s %10s %10s %9s %9s\n" scenario "base req/s" "jit req/s" "rps x" \
  "p50 x" "p99 x" "cpu/req x" "jit p99" "base us/r" "jit us/r" "jit p50" "rdr us/r"
hz=$(getconf CLK_TCK)
for scenario in ${SCENARIOS:-h1-c1 h1-c16 h1-c64 h2-c16 churn-c16}; do
  declare -A sum=()
  for round in 1 2; do
    for who in base jit; do
      if [ "$who" = base ]; then r=$(run "$BPID" "$BASE_PORT" "$scenario"); else r=$(run "$JPID" "$JIT_PORT" "$scenario" $RPID); fi
      read -r reqs rps p50 p99 ticks rticks <<<"$r"
      sum[$who-reqs]=$(( ${sum[$who-reqs]:-0} + reqs ))
      sum[$who-rps]=$(python3 -c "print(${sum[$who-rps]:-0} + $rps)")
      sum[$who-p50]=$(python3 -c "print(${sum[$who-p50]:-0} + $p50)")
      sum[$who-p99]=$(python3 -c "print(${sum[$who-p99]:-0} + $p99)")
      sum[$who-ticks]=$(( ${sum[$who-ticks]:-0} + ticks ))
      sum[$who-rticks]=$(( ${sum[$who-rticks]:-0} + rticks ))
    done
  done
  python3 - "$scenario" "$hz" "${sum[base-reqs]}" "${sum[jit-reqs]}" "${sum[base-rps]}" "${sum[jit-rps]}" \
    "${sum[base-p50]}" "${sum[jit-p50]}" "${sum[base-p99]}" "${sum[jit-p99]}" "${sum[base-ticks]}" "${sum[jit-ticks]}" "${sum[jit-rticks]}" <<'PY'
import sys
s, hz = sys.argv[1], int(sys.argv[2])
breq, jreq, brps, jrps, bp50, jp50, bp99, jp99, bt, jt, rt = map(float, sys.argv[3:])
bcpu = bt / hz * 1e6 / max(breq, 1); jcpu = jt / hz * 1e6 / max(jreq, 1)
print(f"{s:<10} {brps/2:>12.0f} {jrps/2:>12.0f} {jrps/brps:>9.2f} {jp50/bp50:>9.2f} {jp99/bp99:>9.2f} "
      f"{jcpu/bcpu:>9.2f} {jp99/2/1000:>7.2f}ms {bcpu:>10.1f} {jcpu:>10.1f} {jp50/2/1000:>7.2f}ms {rt / hz * 1e6 / max(jreq, 1):>9.1f}")
PY
  unset sum
done
kill "$JPID" "$BPID" 2>/dev/null || true
wait "$JPID" "$BPID" 2>/dev/null || true

# A run of chosen scenarios (an A/B) stops here.
[ -n "${SCENARIOS:-}" ] && exit 0

startup_table

echo
echo "# edit to effect (change written -> request allowed over TLS)"
cargo bench --quiet --bench edit_to_effect -- 50 2>/dev/null | grep -E "cluster|file"
