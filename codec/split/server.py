"""HTTP service for the server half of split computing (Starlette on uvicorn).

    POST /v1/infer?k=5   body: a feature container (application/octet-stream)
                         -> 200 {"model", "batch", "bytes", "top_k": [[{class, label, probability}, ...]],
                                 "decode_ms", "tail_ms"}
    GET  /healthz        -> 200 {"status": "ok", "model", "input_size", "labels"}

Bad payloads get a 4xx with {"error": message}: 400 undecodable, 408 body too slow, 411/413 size, 415 type,
431 headers over 8 KiB or 100 fields.
Stateless: run several workers (`codec serve --workers N`) behind any load balancer; each loads the model once.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Iterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from codec.errors import CodecError
from codec.split.runtime import ServerDecoder

DEFAULT_MAX_BYTES = 1 << 20
DEFAULT_BODY_TIMEOUT = 10.0
CONTENT_TYPE = "application/octet-stream"
MAX_HEADER_BYTES = 8192  # as nginx's default large_client_header_buffers line; no client of ours sends 1 KiB
MAX_HEADER_FIELDS = 100


class RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_body(request: Request, max_bytes: int, timeout: float) -> bytes:
    """The request body, refused when larger than max_bytes or slower to arrive than timeout seconds."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, "bad Content-Length")
        if int(declared) > max_bytes:
            raise RequestError(413, f"payload of {declared} bytes exceeds the limit of {max_bytes}")

    async def collect() -> bytes:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise RequestError(413, f"payload exceeds the limit of {max_bytes} bytes")
        return bytes(body)

    try:
        return await asyncio.wait_for(collect(), timeout)
    except asyncio.TimeoutError:
        raise RequestError(408, f"request body not received within {timeout:g} s") from None


class HeaderLimits:
    """ASGI wrapper answering 431 to requests whose headers exceed MAX_HEADER_BYTES or MAX_HEADER_FIELDS (h11 alone
    lets through whatever arrives in one socket read, up to 256 KiB)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        headers = scope.get("headers", [])
        if scope["type"] == "http" and (len(headers) > MAX_HEADER_FIELDS
                                        or sum(len(k) + len(v) + 4 for k, v in headers) > MAX_HEADER_BYTES):
            limits = f"request headers exceed {MAX_HEADER_BYTES} bytes or {MAX_HEADER_FIELDS} fields"
            await JSONResponse({"error": limits}, status_code=431)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(model: str, max_bytes: int = DEFAULT_MAX_BYTES, body_timeout: float = DEFAULT_BODY_TIMEOUT) -> HeaderLimits:
    """The ASGI app serving one feature model."""
    decoder = ServerDecoder(model)
    inference_lock = threading.Lock()  # torch already uses every core: one inference at a time per worker

    def run_inference(data: bytes, k: int) -> dict:
        with inference_lock:
            result = decoder.infer(data)
        return {"model": decoder.card.name, "batch": int(result.logits.shape[0]), "bytes": len(data),
                "top_k": decoder.top_k(result.logits, k), "decode_ms": round(result.decode_seconds * 1e3, 3),
                "tail_ms": round(result.tail_seconds * 1e3, 3)}

    async def infer(request: Request) -> JSONResponse:
        try:
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            if content_type != CONTENT_TYPE:
                raise RequestError(415, f"send the container as {CONTENT_TYPE}")
            k_text = request.query_params.get("k", "5")
            if not k_text.isdigit() or not 1 <= int(k_text) <= 1000:
                raise RequestError(400, "k must be an integer in 1..1000")
            data = await read_body(request, max_bytes, body_timeout)
            if not data:
                raise RequestError(400, "empty body: send a feature container made by the device encoder")
            return JSONResponse(await run_in_threadpool(run_inference, data, int(k_text)))
        except RequestError as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        except CodecError as error:
            return JSONResponse({"error": str(error).replace(
                "images come from `codec encode`, features", "send a feature container: it comes")}, status_code=400)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "model": decoder.card.name, "input_size": decoder.model.input_size,
                             "labels": decoder.card.labels})

    routes = [Route("/v1/infer", infer, methods=["POST"]), Route("/healthz", health, methods=["GET"])]
    return HeaderLimits(Starlette(routes=routes))


def app_from_environment() -> HeaderLimits:
    """Factory for uvicorn workers (`codec serve` passes its options through the environment)."""
    return create_app(os.environ["CODEC_SERVE_MODEL"], int(os.environ.get("CODEC_SERVE_MAX_BYTES", DEFAULT_MAX_BYTES)),
                      float(os.environ.get("CODEC_SERVE_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT)))


def serve(model: str, host: str, port: int, workers: int = 1, max_bytes: int = DEFAULT_MAX_BYTES,
          body_timeout: float = DEFAULT_BODY_TIMEOUT, threads: int | None = None) -> None:
    """Run uvicorn; the model is checked here first so a bad name fails before any worker starts."""
    import uvicorn

    from codec.split.runtime import load_feature_model

    load_feature_model(model)
    os.environ.update({"CODEC_SERVE_MODEL": model, "CODEC_SERVE_MAX_BYTES": str(max_bytes),
                       "CODEC_SERVE_BODY_TIMEOUT": str(body_timeout)})
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    uvicorn.run("codec.split.server:app_from_environment", factory=True, host=host, port=port, workers=workers,
                timeout_keep_alive=5, log_level="warning")


@contextlib.contextmanager
def local_server(model: str, options: tuple[str, ...] = (), startup_timeout: float = 120.0,
                 env: dict | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """`codec serve` on a free loopback port in a child process, for benchmarks and tests; yields (url, process)
    once /healthz answers, and stops the server on exit."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tempfile.TemporaryFile()  # a file, not a pipe: a long run can never block on a full pipe
    process = subprocess.Popen([sys.executable, "-m", "codec", "serve", "--model", model, "--port", str(port), *options],
                               env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + startup_timeout
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.time() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"server did not start: {log.read().decode()[-2000:]}") from None
                time.sleep(0.3)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()
