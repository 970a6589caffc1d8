#!/usr/bin/env python
"""Load test of `codec serve` on loopback: concurrent clients, hostile requests mixed in, memory watched.

    python tools/load_test.py --model es-r20-mid --clients 16 --requests 2000

Starts the real server as a subprocess, then `--clients` threads send valid feature containers (one image each)
until `--requests` have been answered or `--max-seconds` pass. Meanwhile one thread keeps sending malformed,
oversized, empty, wrong-type and slow (stalled body) requests, each of which must get its 4xx. Reports errors,
p50 / p99 latency, throughput and the server's resident memory sampled through the run (/proc, all workers).
"""
from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codec.split.runtime import DeviceEncoder  # noqa: E402
from codec.split.server import local_server  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def server_rss_mib(pid: int) -> float:
    """Resident memory of the server process and its worker children."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(child) for child in children.read_text().split()]
    for process in pids:
        try:
            for line in Path(f"/proc/{process}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total / 1024


def post(port: int, body: bytes, content_type: str = "application/octet-stream") -> tuple[int, float]:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/v1/infer?k=1", body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        connection.close()


def slow_request(port: int) -> int:
    """Declare 100 bytes, send 4, stall: the server must answer 408 without waiting forever."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(b"POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                           b"Content-Length: 100\r\n\r\nLCDC")
        reply = connection.recv(64).decode(errors="replace")
    return int(reply.split()[1]) if reply.startswith("HTTP/") else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=600)
    parser.add_argument("--max-bytes", type=int, default=65536)
    parser.add_argument("--out", type=Path, default=RESULTS / "load_test.json")
    args = parser.parse_args()

    options = ("--workers", str(args.workers), "--max-bytes", str(args.max_bytes), "--body-timeout", "2")
    with local_server(args.model, options) as (url, server):
        port = int(url.rsplit(":", 1)[1])
        rng = np.random.default_rng(0)
        device = DeviceEncoder(args.model)
        payloads = [device.encode(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(64)]
        latencies, errors, lock = [], [], threading.Lock()
        issued = iter(range(args.requests))
        deadline = time.time() + args.max_seconds
        memory = [(0.0, server_rss_mib(server.pid))]
        started = time.perf_counter()

        def client(index: int) -> None:
            for number in issued:
                if time.time() > deadline:
                    return
                try:
                    status, seconds = post(port, payloads[(number + index) % len(payloads)])
                except OSError as error:
                    status, seconds = -1, 0.0
                    with lock:
                        errors.append(f"request {number}: {error}")
                with lock:
                    latencies.append(seconds)
                    if status != 200 and status != -1:
                        errors.append(f"request {number}: HTTP {status}")

        hostile = {"malformed": (400, lambda: post(port, b"LCDC" + bytes(60))[0]),
                   "empty": (400, lambda: post(port, b"")[0]),
                   "oversized": (413, lambda: post(port, bytes(args.max_bytes + 1))[0]),
                   "wrong type": (415, lambda: post(port, payloads[0], "text/plain")[0]),
                   "slow body": (408, lambda: slow_request(port))}
        hostile_results = {name: [] for name in hostile}
        finished = threading.Event()

        def attacker() -> None:
            while not finished.is_set():
                for name, (expected, send) in hostile.items():
                    try:
                        hostile_results[name].append(send() == expected)
                    except OSError:
                        hostile_results[name].append(False)
                memory.append((time.perf_counter() - started, server_rss_mib(server.pid)))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        bad = threading.Thread(target=attacker)
        bad.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        finished.set()
        bad.join()
        memory.append((elapsed, server_rss_mib(server.pid)))
        still_up = post(port, payloads[0])[0] == 200
    times = np.array(latencies) * 1e3
    quarter = max(1, len(memory) // 4)
    report = {
        "model": args.model, "clients": args.clients, "workers": args.workers, "requests": len(latencies),
        "errors": len(errors), "error_examples": errors[:5], "seconds": elapsed,
        "throughput_per_s": len(latencies) / elapsed, "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)), "max_ms": float(times.max()),
        "hostile": {name: {"sent": len(r), "answered_as_expected": int(sum(r))} for name, r in hostile_results.items()},
        "server_rss_mib": {"start": memory[0][1], "first_quarter_max": max(m for _, m in memory[:quarter]),
                           "last_quarter_max": max(m for _, m in memory[-quarter:]), "end": memory[-1][1]},
        "server_still_serving": still_up,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    failed = report["errors"] or not still_up or any(
        h["answered_as_expected"] != h["sent"] for h in report["hostile"].values())
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
