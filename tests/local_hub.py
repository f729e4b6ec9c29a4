"""A local HTTP server that answers like the Hugging Face hub's ``/<repo>/resolve/<revision>/<file>`` route.

Pointed at through ``HF_ENDPOINT``, it lets huggingface_hub's real ``hf_hub_download`` run against files the
test chooses (no network, no mock of the download code); unknown paths answer 404 as the hub does. Every request
is recorded. ``closed_port()`` gives a local address where nothing listens (a network that refuses).
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from typing import Iterator

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def _answer(self, with_body: bool) -> None:
        self.server.requests.append((self.command, self.path))
        body = self.server.files.get(self.path.split("?")[0])
        if body is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        ranged = self.headers.get("Range", "")
        if ranged.startswith("bytes="):
            start = int(ranged[6:].split("-")[0] or 0)
        self.send_response(206 if start else 200)
        self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if with_body:
            self.wfile.write(body[start:])

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(True)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files: dict[str, bytes]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = files
        self.requests: list[tuple[str, str]] = []


class LocalHub:
    """``with LocalHub({"/org/repo/resolve/main/file.bin": b"..."}) as hub_:`` serves files at ``hub_.url``."""

    def __init__(self, files: dict[str, bytes]):
        self._server = _Server(dict(files))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def requests(self) -> list[tuple[str, str]]:
        return self._server.requests

    def __enter__(self) -> "LocalHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def closed_port() -> int:
    """A local TCP port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def resolve_path(repo_id: str, filename: str, revision: str = "main") -> str:
    """The hub path huggingface_hub requests for one file."""
    return f"/{repo_id}/resolve/{revision}/{filename}"


def files_under(folder) -> Iterator[str]:
    """Every path below ``folder`` (files and folders), relative, for 'nothing left behind' checks."""
    from pathlib import Path

    root = Path(folder)
    return (str(p.relative_to(root)) for p in root.rglob("*"))
