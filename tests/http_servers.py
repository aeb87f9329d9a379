"""Real servers on 127.0.0.1 for the STAC tests, started and stopped by the tests.

* :func:`file_server`: a standard-library HTTP server process serving a folder with byte ranges
  (``Range: bytes=a-b``, as GDAL's /vsicurl/ asks for COG windows); ``die_after`` makes the
  process exit after that many range requests (a server dying mid-read).  Requests are logged to
  ``requests.log`` in the folder's parent.
* :func:`stac_api`: the STAC API of ``rustac serve`` (PyPI ``rustac``; its in-memory backend
  loaded with an item collection file).

Run as a script, this module is the file server: ``python http_servers.py DIR PORT [DIE_AFTER]``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server {url} did not start in {timeout} s")


@contextlib.contextmanager
def _process(cmd: list[str], url: str, log_path: Path, **kwargs):
    with open(log_path, "ab") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **kwargs)
    try:
        wait_for(url, process)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def file_server(folder: Path, die_after: int | None = None, port: int | None = None):
    """Serve ``folder`` at http://127.0.0.1:PORT/ with byte ranges; yields (base URL, process, log path)."""
    port = port or free_port()
    log_path = Path(folder).parent / "requests.log"
    cmd = [sys.executable, __file__, str(folder), str(port)] + ([str(die_after)] if die_after is not None else [])
    # A fresh first path segment per server (ignored by it): GDAL caches what it read per URL in the process.
    base = f"http://127.0.0.1:{port}/r-{uuid.uuid4().hex[:12]}/"
    with _process(cmd, f"{base}__alive__", Path(folder).parent / "file_server.out") as process:
        yield base, process, log_path


@contextlib.contextmanager
def stac_api(items_path: Path, port: int | None = None):
    """``rustac serve`` of an item collection file; yields (API URL, process, its output file)."""
    rustac = shutil.which("rustac") or str(Path(sys.executable).parent / "rustac")
    port = port or free_port()
    out = Path(items_path).parent / "stac_api.out"
    cmd = [rustac, "serve", "--addr", f"127.0.0.1:{port}", "--create-collections", str(items_path)]
    url = f"http://127.0.0.1:{port}"
    with _process(cmd, url, out) as process:
        yield url, process, out


class RangeHandler(SimpleHTTPRequestHandler):
    """Files with single byte ranges (206 Partial Content)."""

    die_after: int | None = None
    ranges_served = 0
    log_path: Path | None = None

    def log_request(self, code="-", size="-"):
        """One line per request: method, path, range asked for, status."""
        if self.log_path is not None:
            with open(self.log_path, "a") as f:
                f.write(f"{self.command} {self.path} {self.headers.get('Range', '-')} {code}\n")

    def translate_path(self, path):
        parts = path.split("/", 2)
        if len(parts) > 2 and parts[1].startswith("r-"):
            path = "/" + parts[2]
        return super().translate_path(path)

    def do_GET(self):  # noqa: N802
        if self.path.endswith("/__alive__"):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            return
        header = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if header is None or not path.is_file():
            return super().do_GET()
        RangeHandler.ranges_served += 1
        if self.die_after is not None and RangeHandler.ranges_served > self.die_after:
            os._exit(3)  # the server process dies mid-read, without answering
        size = path.stat().st_size
        start, _, end = header.removeprefix("bytes=").partition("-")
        start = int(start)
        end = min(int(end) if end else size - 1, size - 1)
        if start >= size:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.end_headers()
            return
        with open(path, "rb") as f:
            f.seek(start)
            body = f.read(end - start + 1)
        self.send_response(206)
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def end_headers(self):
        self.send_header("Accept-Ranges", "bytes")
        super().end_headers()


def main(folder: str, port: str, die_after: str | None = None) -> None:
    RangeHandler.die_after = int(die_after) if die_after is not None else None
    RangeHandler.log_path = Path(folder).parent / "requests.log"
    os.chdir(folder)
    ThreadingHTTPServer(("127.0.0.1", int(port)), RangeHandler).serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:])
