"""A Kubernetes API stand-in at the HTTP boundary: replays recorded responses, records requests.

The real ``kubernetes`` client is pointed at it (plain HTTP on 127.0.0.1), so everything above the
socket — URL building, headers, content types, JSON (de)serialisation, ``ApiException`` — is the
client's own code. Each test scripts the exchanges it expects, in order; a request that does not
match the next one is answered with 599 and remembered, and :meth:`KubeApiReplay.assert_done`
fails the test on any mismatch or any scripted exchange left unused.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

RECORDINGS = Path(__file__).parent / "data" / "k8s_api"
MISMATCH_STATUS = 599


def recorded(name: str, **overrides: Any) -> dict[str, Any]:
    """A recorded body; ``overrides`` name nested keys with ``__`` (``spec__replicas=4``)."""
    body: dict[str, Any] = json.loads((RECORDINGS / name).read_text())
    for dotted, value in overrides.items():
        node = body
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return body


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    status: int
    body: dict[str, Any]


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any


@dataclass
class KubeApiReplay:
    script: list[Exchange] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def expect(self, method: str, path: str, status: int, body: dict[str, Any]) -> None:
        self.script.append(Exchange(method, path, status, copy.deepcopy(body)))

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        address = self._server.server_address
        return f"http://{address[0]!s}:{int(address[1])}"

    def start(self) -> None:
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                status, body = replay._answer(
                    RecordedRequest(
                        method=self.command,
                        path=split.path,
                        query=split.query,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=json.loads(raw) if raw else None,
                    )
                )
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PATCH = do_PUT = do_POST = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name="kube-api-replay", daemon=True
        ).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _answer(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(request)
            if not self.script:
                self.mismatches.append(f"unexpected {request.method} {request.path}: nothing left to replay")
                return MISMATCH_STATUS, {"message": "unexpected request"}
            expected = self.script[0]
            if (request.method, request.path) != (expected.method, expected.path):
                self.mismatches.append(
                    f"expected {expected.method} {expected.path}, got {request.method} {request.path}"
                )
                return MISMATCH_STATUS, {"message": "request did not match the script"}
            self.script.pop(0)
            return expected.status, expected.body

    def assert_done(self) -> None:
        assert not self.mismatches, self.mismatches
        assert not self.script, f"scripted exchanges never requested: {[(e.method, e.path) for e in self.script]}"
