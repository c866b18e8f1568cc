#!/usr/bin/env python3
"""Hold N idle keep-alive HTTP connections open to a server on 127.0.0.1.

Each connection sends one `GET /plaintext` and reads the answer, so the server
has served a request on it and holds it as an idle keep-alive connection. Then
the script writes `opened=N failed=F` to the --ready file and sleeps until it
is killed or --hold seconds have passed (so it always stops by itself).

With --ws PATH each connection is a WebSocket instead (for example
`/ws/echo?subscribe=idle`, which also subscribes it to a topic): it completes
the handshake, sends one text message and reads its echo, so the server has
handled a message on it, and then stays idle.
"""
import argparse
import base64
import os
import socket
import struct
import time

REQUEST = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
BODY = b"Hello, World!"


def open_idle(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(REQUEST)
    answer = b""
    while not answer.endswith(BODY):
        chunk = sock.recv(4096)
        if not chunk:
            raise OSError("server closed the connection")
        answer += chunk
    return sock


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError("server closed the connection")
        data += chunk
    return data


def read_frame(sock):
    b0, b1 = read_exact(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", read_exact(sock, 2))[0]
    elif n == 127:
        n = struct.unpack(">Q", read_exact(sock, 8))[0]
    return b0 & 0x0F, read_exact(sock, n)


def open_ws(port, path):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise OSError("server closed the connection")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise OSError("handshake refused")
    payload = b"hello, idle"
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    while True:
        opcode, data = read_frame(sock)
        if opcode == 1 and data == payload:
            return sock


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--conns", type=int, default=5000)
    parser.add_argument("--ready", required=True, help="file written once all are open")
    parser.add_argument("--hold", type=float, default=120, help="max seconds to hold them")
    parser.add_argument("--ws", help="hold WebSockets on this path instead")
    args = parser.parse_args()

    socks, failed = [], 0
    for _ in range(args.conns):
        try:
            if args.ws:
                socks.append(open_ws(args.port, args.ws))
            else:
                socks.append(open_idle(args.port))
        except OSError:
            failed += 1
    with open(args.ready + ".tmp", "w") as f:
        f.write(f"opened={len(socks)} failed={failed}\n")
    os.replace(args.ready + ".tmp", args.ready)
    time.sleep(args.hold)


if __name__ == "__main__":
    main()
