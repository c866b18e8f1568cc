#!/usr/bin/env bash
# Instructions per echoed WebSocket message on the server, counted by
# callgrind (like bench/callgrind.sh for HTTP): hello in one process under
# callgrind twice, one WebSocket on /ws/echo, N1 and N2 text messages of
# SIZE bytes sent 16 per write; reports (I2 - I1) / (N2 - N1).
#
#   bench/callgrind_ws.sh            # SIZE=64, N1=8000, N2=24000
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
port=${PORT:-18932}
size=${SIZE:-64}
n1=${N1:-8000}
n2=${N2:-24000}
callgrind_prepare
client() { # n: messages echoed
    python3 - "$port" "$1" "$size" <<'PY'
import base64, os, socket, sys
port, n, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port), timeout=120)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(f"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(1)
assert size < 126
payload = b"x" * size
mask = b"\x01\x02\x03\x04"
frame = bytes([0x81, 0x80 | size]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
want = (2 + size) * 16
for _ in range(n // 16):
    s.sendall(frame * 16)
    got = 0
    while got < want:
        chunk = s.recv(65536)
        if not chunk: sys.exit("connection closed")
        got += len(chunk)
PY
}
run() {
    callgrind_instructions "$1" "$port" -- client "$1"
}
i1=$(run "$n1")
i2=$(run "$n2")
python3 -c "print(f'ws echo {$size} bytes, 16 per write: {($i2 - $i1) / ($n2 - $n1):.0f} instructions per message')"
