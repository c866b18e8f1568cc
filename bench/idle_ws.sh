#!/usr/bin/env bash
# RSS growth per idle WebSocket connection: tine's hello with one worker
# (a single process), N WebSockets on /ws/echo, each subscribed to a topic
# and having echoed one message, then idle. Prints bytes per connection
# (server RSS after minus before, over N), ROUNDS times.
#
#   bench/idle_ws.sh                  # N=5000, ROUNDS=3, path below
#   N=5000 WS_PATH='/ws/echo?subscribe=idle' bench/idle_ws.sh
#   WS_PATH= bench/idle_ws.sh         # idle HTTP keep-alive connections instead
#
# Needs a release build of hello (built here if missing) and an open-file
# limit above N (raised here when the hard limit allows).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${N:-5000}
rounds=${ROUNDS:-3}
path=${WS_PATH-/ws/echo?subscribe=idle}
ws_arg=()
[[ -n $path ]] && ws_arg=(--ws "$path")
port=${PORT:-18941}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release -q -p hello
out=$(mktemp -d)
server=
client=
cleanup() {
    [[ -n $client ]] && kill "$client" 2>/dev/null || true
    [[ -n $server ]] && kill -INT "$server" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$out"
}
trap cleanup EXIT
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
for ((r = 1; r <= rounds; r++)); do
    "${CARGO_TARGET_DIR:-target}"/release/hello --bind "127.0.0.1:$port" --workers 1 >"$out/server.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port)).close()" 2>/dev/null && break
        sleep 0.1
    done
    sleep 0.5
    before=$(rss_kb "$server")
    rm -f "$out/ready"
    python3 bench/idle.py --port "$port" --conns "$n" "${ws_arg[@]}" --ready "$out/ready" --hold 120 &
    client=$!
    for _ in $(seq 1200); do # up to 120 s
        [[ -s $out/ready ]] && break
        kill -0 "$client" 2>/dev/null || break
        sleep 0.1
    done
    sleep 1 # let the server settle
    after=$(rss_kb "$server")
    read -r opened failed < <(sed 's/[a-z]*=//g' "$out/ready")
    kill "$client" 2>/dev/null || true
    wait "$client" 2>/dev/null || true
    client=
    kill -INT "$server"
    wait "$server" 2>/dev/null || true
    server=
    echo "round $r: $(((after - before) * 1024 / opened)) bytes per idle ${path:-HTTP keep-alive} connection ($opened open, $failed failed; RSS ${before} -> ${after} KiB)"
done
