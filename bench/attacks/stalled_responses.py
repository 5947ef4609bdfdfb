#!/usr/bin/env python3
"""bench/attacks/stalled_responses.py: rounds of CONNECTIONS connections x STREAMS requests whose responses the
client never lets out (SETTINGS_INITIAL_WINDOW_SIZE 0), then disconnect. Per round it prints the broker's RSS
while they are held and after they are gone, and how long a fresh client waits for /healthz meanwhile.

    bench/attacks/stalled_responses.py --port 8080 --pid $(pgrep -f 'approvald serve') --path /metrics
"""
import argparse
import socket
import struct
import time


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(name, value):
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def request(stream, path):
    block = literal(b":method", b"GET") + literal(b":scheme", b"http") + literal(b":authority", b"bench")
    return frame(1, 5, stream, block + literal(b":path", path.encode()))


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def probe(port, timeout=10.0):
    """Seconds until a new connection's /healthz gets its response HEADERS; a stream refused while the broker sheds
    load (REFUSED_STREAM) is sent again on the next stream, as HTTP/2 clients do."""
    started = time.time()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as probe_socket:
        stream = 1
        probe_socket.sendall(PREFACE + frame(4, 0, 0) + request(stream, "/healthz"))
        received = b""
        while time.time() - started < timeout:
            try:
                chunk = probe_socket.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            received += chunk
            while len(received) >= 9 and len(received) >= 9 + int.from_bytes(received[:3], "big"):
                length = int.from_bytes(received[:3], "big")
                kind, frame_stream = received[3], int.from_bytes(received[5:9], "big") & 0x7FFFFFFF
                received = received[9 + length:]
                if frame_stream == stream and kind == 1:
                    return time.time() - started
                if frame_stream == stream and kind == 3:
                    stream += 2
                    probe_socket.sendall(request(stream, "/healthz"))
    return float("inf")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--path", default="/metrics")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--streams", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--settle", type=float, default=1.5, help="seconds to wait after connecting and closing")
    arguments = parser.parse_args()
    print(f"stalled-responses baseline rss_mib={rss_mib(arguments.pid):.1f}")
    for round_number in range(arguments.rounds):
        held = []
        for _ in range(arguments.connections):
            connection = socket.create_connection(("127.0.0.1", arguments.port))
            burst = PREFACE + frame(4, 0, 0, struct.pack(">HI", 4, 0))
            burst += b"".join(request(2 * index + 1, arguments.path) for index in range(arguments.streams))
            connection.sendall(burst)
            held.append(connection)
        waited = probe(arguments.port)
        time.sleep(arguments.settle)
        holding = rss_mib(arguments.pid)
        for connection in held:
            connection.close()
        time.sleep(arguments.settle)
        print(f"stalled-responses round={round_number + 1} path={arguments.path} connections={arguments.connections} "
              f"streams={arguments.streams} holding_rss_mib={holding:.1f} after_rss_mib={rss_mib(arguments.pid):.1f} "
              f"probe_seconds={waited:.3f}", flush=True)


if __name__ == "__main__":
    main()
