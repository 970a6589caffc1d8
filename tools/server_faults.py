#!/usr/bin/env python
"""`codec serve` when things around it fail: the real server on loopback, one scenario at a time.

    python tools/server_faults.py --model es-r20-mid            # every scenario, full size (a few minutes)
    python tools/server_faults.py --model es-r20-mid --scale 0.1 --scenarios burst pipelined

Scenarios (each reports "ok" and its counts; every good request must get the same answer the server gave it
before any fault, and nothing may wait longer than the client timeout):
  worker_kill     `--workers 2`, clients busy, one worker SIGKILLed: requests cut off with it are retried once
                  (what a load balancer does), the dead worker is replaced, the new one answers correctly
  disconnects     clients that close mid-body and right after sending a request (without reading the answer)
  burst           200 connections at once, each with a good request
  pipelined       several requests on one connection without waiting: answered in order
  big_headers     a 64 KiB and a 1 MiB header, 2,000 header lines: refused (431, 400 or closed), the server keeps
                  serving
  other_model     a container made for another feature model, and an image container: 400 with the reason
  soak            good and bad requests mixed (bounded in count and time), memory sampled: flat from the
                  first quarter to the end
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from load_test import server_rss_mib  # noqa: E402

from codec.split.runtime import DeviceEncoder  # noqa: E402
from codec.split.server import local_server  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TIMEOUT = 30.0  # no request may take longer: a longer wait counts as a hang
CUT_OFF = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, http.client.RemoteDisconnected)


class Target:
    """The server under test, good payloads and the answers it gave them before any fault."""

    def __init__(self, port: int, process, model: str, payloads: list[bytes]) -> None:
        self.port, self.process, self.model, self.payloads = port, process, model, payloads
        self.reference = [self.post(data)[1] for data in payloads]
        if any(answer is None for answer in self.reference):
            raise RuntimeError("the server did not answer the reference requests")

    def post(self, body: bytes, content_type: str = "application/octet-stream") -> tuple[int, list | None]:
        """(status, top_k of a 200 answer)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            connection.request("POST", "/v1/infer?k=3", body=body, headers={"Content-Type": content_type})
            response = connection.getresponse()
            payload = response.read()
            return response.status, json.loads(payload)["top_k"] if response.status == 200 else None
        finally:
            connection.close()

    def correct(self, index: int, attempts: int = 1) -> tuple[bool, int]:
        """Send good payload `index` (retrying a request cut off by the server); (answered correctly, retries)."""
        for attempt in range(attempts):
            try:
                status, top_k = self.post(self.payloads[index])
                return status == 200 and top_k == self.reference[index], attempt
            except CUT_OFF:
                time.sleep(0.1)
        return False, attempts

    def workers(self) -> list[int]:
        """Pids of the uvicorn worker processes (children started by multiprocessing's spawn)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = [int(pid) for pid in children.read_text().split()] if children.exists() else []
        return [pid for pid in pids if b"spawn_main" in _cmdline(pid)]

    def all_correct(self, count: int) -> bool:
        return all(self.correct(index % len(self.payloads))[0] for index in range(count))


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def raw_request(body: bytes, content_type: str = "application/octet-stream", extra_headers: bytes = b"") -> bytes:
    return (b"POST /v1/infer?k=3 HTTP/1.1\r\nHost: x\r\nContent-Type: " + content_type.encode() + b"\r\n"
            + extra_headers + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def read_response(stream) -> tuple[int, bytes]:
    """One HTTP/1.1 response from a socket file: (status, body); (0, b"") when the server closed instead."""
    status_line = stream.readline()
    if not status_line:
        return 0, b""
    length = 0
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return int(status_line.split()[1]), stream.read(length)


def run_clients(count: int, clients: int, send: Callable[[int], tuple[bool, int]],
                progress: str | None = None, deadline: float = float("inf")) -> dict:
    """Up to `count` requests from `clients` threads, none started after `deadline` (perf_counter);
    send(number) -> (answered correctly, retries). "sent" counts the requests made."""
    numbers = iter(range(count))
    results = {"sent": 0, "correct": 0, "wrong_or_failed": 0, "retried": 0, "hangs": 0}
    lock = threading.Lock()
    bar = tqdm(total=count, desc=progress, leave=False, disable=progress is None)

    def client() -> None:
        for number in numbers:
            if time.perf_counter() > deadline:
                return
            try:
                correct, retries = send(number)
                key = "correct" if correct else "wrong_or_failed"
            except (TimeoutError, socket.timeout):
                key, retries = "hangs", 0
            except OSError:
                key, retries = "wrong_or_failed", 0
            with lock:
                results[key] += 1
                results["sent"] += 1
                results["retried"] += retries
                bar.update(1)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bar.close()
    return results


def worker_kill(target: Target, scale: float) -> dict:
    before = target.workers()
    if len(before) < 2:
        return {"ok": False, "error": f"expected 2 workers, found {len(before)}"}
    count = max(40, int(1000 * scale))
    victim = {"pid": before[0], "killed_at": None}

    def send(number: int) -> tuple[bool, int]:
        if number == count // 4 and victim["killed_at"] is None:
            os.kill(victim["pid"], signal.SIGKILL)
            victim["killed_at"] = time.perf_counter()
        return target.correct(number % len(target.payloads), attempts=3)

    results = run_clients(count, 8, send, "worker_kill")
    replaced_after = None
    deadline = time.perf_counter() + 120
    while time.perf_counter() < deadline:
        now = target.workers()
        if len(now) == 2 and victim["pid"] not in now:
            replaced_after = time.perf_counter() - victim["killed_at"]
            break
        time.sleep(0.2)
    served_after = target.all_correct(40)  # with two live workers again, both take connections
    ok = (results["correct"] == count and results["hangs"] == 0 and replaced_after is not None and served_after)
    return {"ok": ok, "requests": count, **results, "worker_replaced_after_s": replaced_after,
            "answers_correct_after_replacement": served_after}


def disconnects(target: Target, scale: float) -> dict:
    workers, rss_before = target.workers() or [target.process.pid], server_rss_mib(target.process.pid)
    count = max(20, int(300 * scale))
    request = raw_request(target.payloads[0])
    for number in tqdm(range(count), desc="disconnects", leave=False):
        with socket.create_connection(("127.0.0.1", target.port), timeout=TIMEOUT) as connection:
            if number % 2:  # mid-body: half the declared bytes, then gone
                connection.sendall(request[: len(request) - len(target.payloads[0]) // 2])
            else:  # mid-response: the whole request, then gone with a reset before reading the answer
                connection.sendall(request)
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    time.sleep(0.5)
    served_after = target.all_correct(40)
    same_workers = (target.workers() or [target.process.pid]) == workers
    rss_after = server_rss_mib(target.process.pid)
    return {"ok": served_after and same_workers, "disconnected_clients": count,
            "answers_correct_after": served_after, "no_worker_died": same_workers,
            "server_rss_mib": {"before": rss_before, "after": rss_after}}


def burst(target: Target, scale: float) -> dict:
    count = 200  # at every scale: a burst is about concurrency, not volume
    gate = threading.Barrier(count)

    def send(number: int) -> tuple[bool, int]:
        gate.wait(timeout=TIMEOUT)
        return target.correct(number % len(target.payloads))

    started = time.perf_counter()
    results = run_clients(count, count, send)
    return {"ok": results["correct"] == count, "connections": count, **results,
            "seconds": time.perf_counter() - started}


def pipelined(target: Target, scale: float) -> dict:
    depth, rounds = 4, max(5, int(50 * scale))
    in_order = 0
    for round_number in range(rounds):
        indices = [(round_number + i) % len(target.payloads) for i in range(depth)]
        with socket.create_connection(("127.0.0.1", target.port), timeout=TIMEOUT) as connection:
            connection.sendall(b"".join(raw_request(target.payloads[i]) for i in indices))
            stream = connection.makefile("rb")
            answers = [read_response(stream) for _ in indices]
        in_order += all(status == 200 and json.loads(body)["top_k"] == target.reference[i]
                        for (status, body), i in zip(answers, indices))
    return {"ok": in_order == rounds, "connections": rounds, "requests_per_connection": depth,
            "answered_in_order": in_order}


def big_headers(target: Target, scale: float) -> dict:
    cases = {"one 64 KiB header": b"X-Big: " + b"a" * 65536 + b"\r\n",
             "one 1 MiB header": b"X-Big: " + b"a" * (1 << 20) + b"\r\n",
             "2000 header lines": b"".join(b"X-H%d: v\r\n" % i for i in range(2000))}
    answers = {}
    for name, headers in cases.items():
        with socket.create_connection(("127.0.0.1", target.port), timeout=TIMEOUT) as connection:
            try:
                connection.sendall(raw_request(target.payloads[0], extra_headers=headers))
                answers[name] = read_response(connection.makefile("rb"))[0]
            except CUT_OFF:
                answers[name] = 0  # closed while we were still sending: refused too
    served_after = target.all_correct(10)
    refused = all(status in (0, 400, 431) for status in answers.values())  # 400: h11 saw > 16 KiB unfinished
    return {"ok": refused and served_after, "status": answers, "answers_correct_after": served_after}


def other_model(target: Target, scale: float, other: str, image_container: bytes) -> dict:
    encoder = DeviceEncoder(other)
    foreign = encoder.encode(np.zeros((1, encoder.input_size, encoder.input_size, 3), np.uint8))
    answers = {}
    for name, body in (("feature container of " + other, foreign), ("image container", image_container)):
        connection = http.client.HTTPConnection("127.0.0.1", target.port, timeout=TIMEOUT)
        connection.request("POST", "/v1/infer", body=body, headers={"Content-Type": "application/octet-stream"})
        response = connection.getresponse()
        answers[name] = {"status": response.status, "error": json.loads(response.read()).get("error")}
        connection.close()
    return {"ok": all(answer["status"] == 400 for answer in answers.values()), "answers": answers}


def soak(target: Target, scale: float, max_seconds: float) -> dict:
    count = max(200, int(60000 * scale))
    payload = target.payloads[0]
    bad = [(400, lambda: target.post(b"LCDC" + bytes(60))[0]), (400, lambda: target.post(b"")[0]),
           (413, lambda: target.post(bytes(70000))[0]), (415, lambda: target.post(payload, "text/plain")[0])]
    memory, deadline = [], time.perf_counter() + max_seconds

    def send(number: int) -> tuple[bool, int]:
        if number % 100 == 0:
            memory.append(server_rss_mib(target.process.pid))
        if number % 5 == 4:
            expected, request = bad[(number // 5) % len(bad)]
            return request() == expected, 0
        return target.correct(number % len(target.payloads))

    started = time.perf_counter()
    results = run_clients(count, 8, send, "soak", deadline)
    quarter = max(1, len(memory) // 4)
    first, last = max(memory[:quarter]), max(memory[-quarter:])
    return {"ok": results["correct"] == results["sent"] > 0 and last <= first * 1.05 + 8, "requests": count, **results,
            "seconds": time.perf_counter() - started,
            "server_rss_mib": {"first_quarter_max": first, "last_quarter_max": last, "samples": len(memory)}}


SCENARIOS = ("worker_kill", "disconnects", "burst", "pipelined", "big_headers", "other_model", "soak")


def run(model: str, other: str, scenarios: tuple[str, ...], scale: float, soak_seconds: float) -> dict:
    """Each scenario against one server (2 workers, so a killed one has a replacement to wait for)."""
    from PIL import Image

    from codec.api import encode_image

    rng = np.random.default_rng(0)
    device = DeviceEncoder(model)
    payloads = [device.encode(rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)) for _ in range(16)]
    image_container = encode_image(Image.new("RGB", (32, 32), (90, 120, 30)), )
    options = ("--workers", "2", "--max-bytes", "65536", "--body-timeout", "2", "--threads", "1")
    report = {"model": model, "workers": 2, "scale": scale, "scenarios": {}}
    with local_server(model, options, startup_timeout=180) as (url, process):
        target = Target(int(url.rsplit(":", 1)[1]), process, model, payloads)
        while len(target.workers()) < 2:  # both workers up before the first fault
            time.sleep(0.2)
        for name in scenarios:
            started = time.perf_counter()
            if name == "other_model":
                result = other_model(target, scale, other, image_container)
            elif name == "soak":
                result = soak(target, scale, soak_seconds)
            else:
                result = globals()[name](target, scale)
            result["scenario_seconds"] = round(time.perf_counter() - started, 2)
            report["scenarios"][name] = result
            print(f"{name}: {'ok' if result['ok'] else 'FAILED'} {json.dumps(result)}", flush=True)
    report["ok"] = all(result["ok"] for result in report["scenarios"].values())
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="es-r20-mid", help="the feature model to serve")
    parser.add_argument("--other-model", default="es-r20-low", help="a feature model whose containers it must refuse")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--scale", type=float, default=1.0, help="request counts relative to the full run")
    parser.add_argument("--soak-seconds", type=float, default=900, help="upper bound on the soak's time")
    parser.add_argument("--out", type=Path, default=RESULTS / "server_faults.json")
    args = parser.parse_args()
    report = run(args.model, args.other_model, tuple(args.scenarios), args.scale, args.soak_seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
