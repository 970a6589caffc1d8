"""HTTP client for `codec serve` (standard library only): send a container, get the server's JSON back."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

from codec.errors import CodecError


class InferenceClient:
    """Talks to one server: `health()` and `infer(container_bytes, k)`."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _request(self, path: str, data: bytes | None = None) -> dict:
        headers = {"Content-Type": "application/octet-stream"} if data is not None else {}
        request = urllib.request.Request(self.url + path, data=data, headers=headers,
                                         method="POST" if data is not None else "GET")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            try:
                message = json.loads(error.read()).get("error", error.reason)
            except (ValueError, AttributeError):
                message = error.reason
            raise CodecError(f"server refused the request ({error.code}): {message}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            raise CodecError(f"cannot reach {self.url}: {reason}") from None
        except ValueError:
            raise CodecError(f"{self.url} did not answer with JSON") from None

    def health(self) -> dict:
        return self._request("/healthz")

    def infer(self, data: bytes, k: int = 5) -> dict:
        return self._request(f"/v1/infer?k={int(k)}", data)
