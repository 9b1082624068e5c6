"""Downloads of real data sets with a bounded time: a quick reachability probe first (DNS can hang
for minutes on a machine without network), then the library's own download."""
from __future__ import annotations

import contextlib
import io
import socket
import threading
from typing import Callable
from urllib.parse import urlparse

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
