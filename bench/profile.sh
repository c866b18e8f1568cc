#!/usr/bin/env bash
# Where a server's CPU goes under one load: the share of user space and of
# the kernel (perf samples by binary), and the system calls per request
# (strace -c, in a second run: strace slows the server down, so the two
# are never measured together). One worker pinned to CPU 0, the load on
# CPU 1, like run.sh's 1core config.
#
#   bench/profile.sh [SERVER] [SCENARIO]    # tine|actix|may, pipeline|ws
#   PORT=19402 SECS=4 bench/profile.sh may pipeline
#
# Needs perf (Debian: linux-perf), strace, wrk, and the release builds
# run.sh makes (SKIP_BUILD=1 run.sh ... or cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
server=${1:-tine}
scenario=${2:-pipeline}
port=${PORT:-19402}
secs=${SECS:-4}
peers=${CARGO_TARGET_DIR:-bench/target}/release
out=$(mktemp -d)
pid=
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$out"' EXIT

case $server in
tine) cmd=("${CARGO_TARGET_DIR:-target}"/release/hello --bind "127.0.0.1:$port" --workers 1) ;;
actix | may) cmd=("$peers/bench-$server" --port "$port" --workers 1 --static "$out") ;;
*) echo "unknown server $server (tine, actix or may)" >&2 && exit 2 ;;
esac

start() {
    taskset -c 0 "${cmd[@]}" >"$out/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return
        sleep 0.1
    done
    echo "$server did not start: $(tail -3 "$out/server.log")" >&2
    exit 1
}

load() { # seconds -> requests (or messages) done
    case $scenario in
    pipeline)
        taskset -c 1 wrk -t 1 -c 64 -d "${1}s" -s bench/pipeline.lua \
            "http://127.0.0.1:$port/plaintext" -- 16 | awk '/ requests in / { print $1 }'
        ;;
    ws)
        taskset -c 1 "$peers/wsload" --url "ws://127.0.0.1:$port/ws/echo" --conns 64 \
            --duration "${1}s" --size 64 | sed -n 's/.*messages=\([0-9]*\).*/\1/p'
        ;;
    *) echo "unknown scenario $scenario (pipeline or ws)" >&2 && exit 2 ;;
    esac
}

stop() {
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

# 1. perf: samples by binary, while the load runs (started before, ended after).
start
load $((secs + 2)) >"$out/requests" &
loader=$!
sleep 1
perf record -q -F 4000 -p "$pid" -o "$out/perf.data" -- sleep "$secs"
wait "$loader"
stop
echo "== $server $scenario: perf samples by binary (${secs} s of a $((secs + 2)) s load)"
perf report -i "$out/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep '%' | head -6

# 2. strace: system calls per request over a whole load run.
start
strace -f -c -o "$out/strace" -p "$pid" 2>/dev/null &
tracer=$!
sleep 0.5
requests=$(load 2)
sleep 0.5
kill -INT "$tracer" 2>/dev/null || true
wait "$tracer" 2>/dev/null || true
stop
echo "== $server $scenario: system calls per request or message ($requests of them, under strace)"
awk -v n="$requests" 'NF >= 5 && $1 ~ /^[0-9.]+$/ && $NF != "total" {
    errors = NF == 6 ? $5 : 0
    if ($4 / n >= 0.001) printf "%-14s %8.3f per request (%d returned an error)\n", $NF, $4 / n, errors
}' "$out/strace"
