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
#
# Needs valgrind and a release build of hello (built here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
path=${1:-/plaintext}
depth=${2:-16}
port=${PORT:-18931}
n1=${N1:-20000}
n2=${N2:-60000}

callgrind_prepare

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

i1=$(run "$n1")
i2=$(run "$n2")
python3 -c "print(f'$path depth $depth: {($i2 - $i1) / ($n2 - $n1):.0f} instructions per request ({$i1} for $n1, {$i2} for $n2)')"
