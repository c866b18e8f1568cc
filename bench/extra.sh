#!/usr/bin/env bash
# The issue-specific load checks that run.sh does not cover, for tine only:
#   fanout   publish/subscribe fan-out: 100 subscribers across 2 workers
#   todo     the todo example under load: GET /api/todos with 100 items at
#            full speed while POSTs arrive at a fixed rate, 2 workers
#   scaling  plaintext and json with 1 and 2 workers (wrk unpinned, 128
#            connections): the workers issue's scaling ratio
#   ws32     WebSocket echo of 32-byte messages, 64 connections, 1 and 2
#            workers (the WebSocket issue's figure)
# Everything talks to 127.0.0.1 only and stops by itself.
# Usage: bench/extra.sh [fanout] [todo] [scaling]   (default: all)
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
OUT=$BENCH/out
mkdir -p "$OUT"
DURATION=${DURATION:-10s}
WHAT=${*:-fanout todo scaling ws32}
log() { printf '[extra %s] %s\n' "$(date +%T)" "$*" >&2; }

(cd "$ROOT" && cargo build --release -p hello -p todo >&2)
(cd "$BENCH" && CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$BENCH/target} cargo build --release -p fanout -p wsload >&2)
HELLO=${CARGO_TARGET_DIR:-$ROOT/target}/release/hello
TODO=${CARGO_TARGET_DIR:-$ROOT/target}/release/todo
FANOUT=${CARGO_TARGET_DIR:-$BENCH/target}/release/fanout
WSLOAD=${CARGO_TARGET_DIR:-$BENCH/target}/release/wsload

pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# start BIN ARGS...: runs a server that prints "listening on http://ADDR",
# sets ADDR and remembers its pid.
start() {
    local logf=$OUT/extra-server.log
    "$@" >"$logf" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 100); do
        ADDR=$(sed -n 's/^listening on http:\/\/\(.*\)$/\1/p' "$logf" | head -1)
        if [[ -n $ADDR ]]; then return 0; fi
        sleep 0.1
    done
    log "server did not start: $*"; cat "$logf" >&2; exit 1
}
stop() { kill -TERM "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }

for what in $WHAT; do
case $what in
fanout)
    start "$HELLO" --bind 127.0.0.1:0 --workers 2
    for round in 1 2 3; do
        log "fanout round $round"
        "$FANOUT" --addr "$ADDR" --subs 100 --messages 2000 --size 32 | tee -a "$OUT/fanout.txt"
    done
    stop ;;
todo)
    db=$(mktemp -d)/todo.db
    start "$TODO" --bind 127.0.0.1:0 --workers 2 --db "$db" --quiet
    for i in $(seq 1 100); do
        curl -fs -o /dev/null -H 'Content-Type: application/json' -d "{\"text\":\"item $i\"}" "http://$ADDR/api/todos"
    done
    log "todo: GET /api/todos (100 items) for $DURATION, POSTs at ~400/s alongside"
    wrk -t1 -c4 -d"$DURATION" -s "$BENCH/todo_post.lua" "http://$ADDR/api/todos" -- 10 >"$OUT/todo-post.txt" &
    wrk -t1 -c64 -d"$DURATION" --latency "http://$ADDR/api/todos" | tee "$OUT/todo-get.txt"
    wait $!
    cat "$OUT/todo-post.txt"
    stop ;;
scaling)
    for w in 1 2; do
        start "$HELLO" --bind 127.0.0.1:0 --workers "$w"
        for path in plaintext json; do
            rps=$(wrk -t2 -c128 -d"$DURATION" "http://$ADDR/$path" | awk '/Requests\/sec/ {print $2}')
            echo "workers=$w path=/$path req_per_sec=$rps" | tee -a "$OUT/scaling.txt"
        done
        stop
    done ;;
ws32)
    secs=${DURATION%s}
    for w in 1 2; do
        start "$HELLO" --bind 127.0.0.1:0 --workers "$w"
        echo "workers=$w $("$WSLOAD" --url "ws://$ADDR/ws/echo" --conns 64 --threads 2 --duration "$secs" --size 32)" | tee -a "$OUT/ws32.txt"
        stop
    done ;;
*) log "unknown: $what"; exit 2 ;;
esac
done
