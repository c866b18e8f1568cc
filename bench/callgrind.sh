#!/usr/bin/env bash
# Instructions per request on the server, counted by callgrind (stable on a
# noisy machine, unlike timings). Runs hello in one process under callgrind
# twice, with N1 and N2 pipelined keep-alive requests (16 per write, like
# wrk's pipeline.lua), and reports (I2 - I1) / (N2 - N1): start-up, warm-up
# and shutdown cancel out, leaving the cost of one request.
#
#   bench/callgrind.sh [PATH] [DEPTH]     # default /plaintext, 16
#   HELLO_ARGS="--without-observability-routes" bench/callgrind.sh
#                                         # extra flags for hello
#   HEADERS="User-Agent: wrk|X-Request-Id: abc" bench/callgrind.sh
#                                         # extra request header lines
#                                         # (|-separated)
#   SERVER=may bench/callgrind.sh         # a peer from bench/peers instead
#                                         # (may, actix or axum; one worker)
#
# A peer need not stop cleanly (may_minihttp's coroutines ignore SIGINT),
# so it runs once: callgrind's counters are zeroed after N1 requests and
# dumped after N2 more with callgrind_control, which counts the same
# thing as the two runs' difference.
#
# Needs valgrind and a release build of hello or the peer (built here if
# missing).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
path=${1:-/plaintext}
depth=${2:-16}
port=${PORT:-18931}
n1=${N1:-20000}
n2=${N2:-60000}

server=${SERVER:-tine}
case $server in
tine) callgrind_prepare ;;
may | actix | axum)
    CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-bench/target} cargo build --release -q \
        --manifest-path bench/Cargo.toml -p "bench-$server"
    peer=${CARGO_TARGET_DIR:-bench/target}/release/bench-$server
    ;;
*) echo "SERVER must be tine, may, actix or axum" >&2 && exit 2 ;;
esac

client() { # n: pipelined requests, after one alone
    python3 - "$port" "$path" "$depth" "$1" "${HEADERS:-}" <<'PY'
import socket, sys
port, path, depth, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
extra = "".join(f"{h}\r\n" for h in sys.argv[5].split("|") if h)
s = socket.create_connection(("127.0.0.1", port), timeout=120)
req = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n".encode()
# One request first, to learn the response's size: the routes measured
# answer a fixed-size response, so n responses are n times that many bytes.
s.sendall(req)
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(4096)
h, body = head.split(b"\r\n\r\n", 1)
length = int([l.split(b":")[1] for l in h.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
while len(body) < length:
    body += s.recv(4096)
size = len(h) + 4 + length
batch = req * depth
sent = 0
for _ in range(n // depth):
    s.sendall(batch)
    want = size * depth
    got = 0
    while got < want:
        chunk = s.recv(min(1 << 16, want - got))
        if not chunk: sys.exit("connection closed")
        got += len(chunk)
s.close()
PY
}

run() {
    # shellcheck disable=SC2086 # HELLO_ARGS is split into words on purpose
    callgrind_instructions "$1" "$port" ${HELLO_ARGS:-} -- client "$1"
}

if [[ $server != tine ]]; then
    out=$(mktemp -d)
    trap 'kill -KILL "$pid" 2>/dev/null; rm -rf "$out"' EXIT
    valgrind --tool=callgrind --callgrind-out-file="$out/cg.%p" \
        "$peer" --port "$port" --workers 1 >"$out/log" 2>&1 &
    pid=$!
    for ((i = 0; ; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        ((i < 600)) || { echo "server did not start: $(cat "$out/log")" >&2 && exit 1; }
        sleep 0.2
    done
    client "$n1"
    callgrind_control --zero "$pid" >/dev/null 2>&1
    client "$((n2 - n1))"
    callgrind_control --dump "$pid" >/dev/null 2>&1
    i2=$(callgrind_annotate "$out"/cg.*.1 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}')
    python3 -c "print(f'$server $path depth $depth: {$i2 / ($n2 - $n1):.0f} instructions per request ({$i2} for $((n2 - n1)))')"
    exit
fi
i1=$(run "$n1")
i2=$(run "$n2")
python3 -c "print(f'$path depth $depth: {($i2 - $i1) / ($n2 - $n1):.0f} instructions per request ({$i1} for $n1, {$i2} for $n2)')"
