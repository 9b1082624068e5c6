"""Downloads of real data sets with a bounded time: a quick reachability probe first (DNS can hang
for minutes on a machine without network), then the library's own download or `download_file`."""
from __future__ import annotations

import contextlib
import io
import os
import socket
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from common.progress import progress

PROBE_SECONDS = 5.0
DOWNLOAD_SOCKET_TIMEOUT = 30.0


class DownloadUnavailable(Exception):
    """The source cannot be reached from here (offline, firewalled, or the server is down)."""


def reachable(url: str, timeout: float = PROBE_SECONDS) -> bool:
    """Can a TCP connection to the url's host be opened within `timeout` seconds (DNS included)?"""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((parsed.hostname, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(result and result[0])


def fetch(urls: list[str], download: Callable[[], None], on_start: Callable[[], None] = lambda: None) -> None:
    """Run `download` (a library call) when one of `urls` is reachable, with socket time-outs set so
    a stalled transfer fails instead of hanging. Raises DownloadUnavailable otherwise."""
    if not any(reachable(url) for url in urls):
        raise DownloadUnavailable(f"cannot reach {urlparse(urls[0]).hostname}")
    on_start()
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_SOCKET_TIMEOUT)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            download()
    except Exception as err:  # any failure of a third-party download is "unavailable" to us
        raise DownloadUnavailable(f"download failed: {err}") from err
    finally:
        socket.setdefaulttimeout(previous)


def download_file(url: str, target: Path, *, max_lines: int | None = None, desc: str | None = None) -> Path:
    """Stream `url` into `target` (its folder created), whole or its first `max_lines` lines, through a
    temporary file renamed at the end: an interrupted transfer never leaves a truncated `target`.
    Call it inside `fetch`, which probes the host and bounds the socket time-outs."""

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url) as response:
            if max_lines is None:
                for chunk in progress(iter(lambda: response.read(1 << 20), b""), desc=desc or target.name):
                    out.write(chunk)
            else:
                for count, line in enumerate(progress(response, desc=desc or target.name, total=max_lines), 1):
                    out.write(line)
                    if count >= max_lines:
                        break
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return target
