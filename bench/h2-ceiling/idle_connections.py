#!/usr/bin/env python3
"""Opens N HTTP/2 connections to a server, each with one open stream (a POST whose body never comes), and
reports the server's resident memory per connection: (RSS with the connections - RSS before) / N.

Usage: idle_connections.py --port PORT --pid SERVER_PID [--connections 10000] [--label NAME]
Prints one summary line. Loopback only.
"""
import argparse
import socket
import struct
import sys
import time


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(name: bytes, value: bytes) -> bytes:
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


OPENING = (
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    + frame(4, 0, 0, b"")
    + frame(1, 4, 1, literal(b":method", b"POST") + literal(b":scheme", b"http")
            + literal(b":authority", b"localhost") + literal(b":path", b"/healthz"))
)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--label", default="server")
    args = parser.parse_args()

    time.sleep(0.5)
    before = rss_bytes(args.pid)
    sockets = []
    started = time.time()
    for index in range(args.connections):
        connection = socket.create_connection(("127.0.0.1", args.port), timeout=10)
        connection.sendall(OPENING)
        sockets.append(connection)
        if (index + 1) % 2000 == 0:
            print(f"  {index + 1} connections open", file=sys.stderr, flush=True)
    # Let the server read every opening and answer with its SETTINGS; then drain what it sent.
    time.sleep(2)
    for connection in sockets:
        connection.setblocking(False)
        try:
            while connection.recv(65536):
                pass
        except BlockingIOError:
            pass
    time.sleep(1)
    after = rss_bytes(args.pid)
    per_connection = (after - before) / args.connections
    print(f"idle-connections {args.label} connections={args.connections} rss_before={before // 1024}KiB "
          f"rss_after={after // 1024}KiB per_connection={per_connection / 1024:.2f}KiB "
          f"open_time={time.time() - started:.1f}s")
    for connection in sockets:
        connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
