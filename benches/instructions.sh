#!/usr/bin/env bash
# Instructions per request: jitgate and the naive webhook (examples/baseline.rs), each run
# under valgrind's callgrind with one worker thread, sent the same requests over TLS by
# h2load. An instruction count does not move with the load on the machine, so two builds
# compare without the noise that wall-clock and CPU-time figures have on a shared VM.
#
#   benches/instructions.sh                 (REQUESTS=2000 of each case, after 200 to warm up)
#   JITGATE_BIN=DIR/jitgate POLICIES=DIR/policies benches/instructions.sh
#                                           (another build, with its own policies: an A/B)
#
# Cases: ungated, denied and approved over HTTP/1.1 on one connection, denied over HTTP/2
# on 16 connections (the bodies and the 10 000 approvals of benches/load.sh). jitgate runs
# with --audit-log on and stdout to /dev/null.
#
# What the counts leave out: the kernel (system calls, TCP, the record's write), and the
# time an instruction takes. Under valgrind, SHA-256 runs ring's AVX code, not the SHA
# extensions most servers have, so the record's hash weighs more here than on hardware.
# jitgate's periodic re-check of its approvals file (a digest every 5 s, on a blocking
# thread) is subtracted: valgrind slows requests fifty-fold but not the clock, so it would
# be charged to them many times over. Use it beside benches/load.sh, not instead of it.
# Only 127.0.0.1 is ever targeted.
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-2000}
PORT=${PORT:-19461}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need valgrind || ! need h2load || ! need callgrind_annotate; then
  echo "installing valgrind and nghttp2-client (h2load)..." >&2
  apt-get update -qq >/dev/null && apt-get install -y -qq valgrind nghttp2-client >/dev/null
fi

cargo build --release --locked --quiet --bin jitgate --example baseline
target=${CARGO_TARGET_DIR:-target}
JITGATE=${JITGATE_BIN:-$target/release/jitgate}
BASELINE=$target/release/examples/baseline

work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
# shellcheck source=benches/common/setup.sh
. benches/common/setup.sh

# Starts "$@" under callgrind on $PORT and waits until it answers; sets $server.
start() { # NAME COMMAND...
  local name=$1; shift
  TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$work/cg.$name" "$@" \
    >/dev/null 2>"$work/$name.err" &
  server=$!
  for _ in $(seq 1 600); do
    # jitgate is ready when its approvals are loaded; the baseline when it answers.
    if curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$PORT/readyz" 2>/dev/null | grep -q 200 \
       || { [ "$name" = baseline ] && curl -sk -o /dev/null -X POST -H 'Content-Type: application/json' \
              --data-binary @"$work/ungated.json" -w '%{http_code}' "https://127.0.0.1:$PORT/validate" 2>/dev/null \
              | grep -q 200; }; then
      return 0
    fi
    sleep 0.2
  done
  echo "$name did not come up under valgrind; its stderr:" >&2; cat "$work/$name.err" >&2; exit 1
}

# Sends CASE's requests and prints the instructions each took (the server's total since the
# counters were zeroed, less the approvals file's re-checks).
measure() { # NAME BODY PROTO CONNECTIONS
  local name=$1 body=$2 proto=$3 conns=$4 flags=() dump total recheck
  [ "$proto" = h1 ] && flags=(--h1)
  send() {
    h2load "${flags[@]}" -c"$conns" -m1 -n "$1" --data="$work/$body.json" -H 'content-type: application/json' \
      "https://127.0.0.1:$PORT/validate?timeout=30s" | grep -E "^requests:"
  }
  send 200 >/dev/null
  callgrind_control -z "$server" >/dev/null 2>&1
  if ! send "$REQUESTS" | grep -q " $REQUESTS succeeded"; then
    echo "not every $body request succeeded against $name" >&2; exit 1
  fi
  callgrind_control -d "$server" >/dev/null 2>&1
  dump=$(ls -t "$work/cg.$name".* | head -1)
  total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  recheck=$(callgrind_annotate --inclusive=yes --threshold=100 "$dump" 2>/dev/null \
    | awk '/FileSync::reload / {gsub(",", "", $1); print $1; exit}')
  echo $(( (total - ${recheck:-0}) / REQUESTS ))
}

CASES=("h1-c1 ungated" "h1-c1 denied" "h1-c1 approved" "h2-c16 denied")
declare -A count
for who in baseline jitgate; do
  if [ "$who" = baseline ]; then
    start baseline "$BASELINE" "127.0.0.1:$PORT" "$work/certs/tls.crt" "$work/certs/tls.key"
  else
    start jitgate "$JITGATE" serve --listen "127.0.0.1:$PORT" \
      --tls-cert "$work/certs/tls.crt" --tls-key "$work/certs/tls.key" --policies "$work/policies" \
      --approvals-file "$work/approvals-10000.yaml" --audit-log "$work/log/audit.jsonl" --log-format text
  fi
  for c in "${CASES[@]}"; do
    read -r scenario body <<<"$c"
    proto=${scenario%%-*}; conns=${scenario#*-c}
    count[$who $c]=$(measure "$who" "$body" "$proto" "$conns")
  done
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
done

echo "# instructions per request (callgrind, user space), $(date -u +%Y-%m-%dT%H:%MZ), $REQUESTS requests each"
echo "# jitgate: $JITGATE"
printf "%-18s %12s %12s %10s\n" case baseline jitgate "jit/base"
for c in "${CASES[@]}"; do
  b=${count[baseline $c]}; j=${count[jitgate $c]}
  printf "%-18s %12s %12s %10s\n" "$c" "$b" "$j" "$(python3 -c "print(f'{$j / $b:.2f}')")"
done
