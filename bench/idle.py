#!/usr/bin/env python3
"""Hold N idle keep-alive HTTP connections open to a server on 127.0.0.1.

Each connection sends one `GET /plaintext` and reads the answer, so the server
has served a request on it and holds it as an idle keep-alive connection. Then
the script writes `opened=N failed=F` to the --ready file and sleeps until it
is killed or --hold seconds have passed (so it always stops by itself).
"""
import argparse
import os
import socket
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


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--conns", type=int, default=5000)
    parser.add_argument("--ready", required=True, help="file written once all are open")
    parser.add_argument("--hold", type=float, default=120, help="max seconds to hold them")
    args = parser.parse_args()

    socks, failed = [], 0
    for _ in range(args.conns):
        try:
            socks.append(open_idle(args.port))
        except OSError:
            failed += 1
    with open(args.ready + ".tmp", "w") as f:
        f.write(f"opened={len(socks)} failed={failed}\n")
    os.replace(args.ready + ".tmp", args.ready)
    time.sleep(args.hold)


if __name__ == "__main__":
    main()
