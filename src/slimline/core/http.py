"""Waiting for a server's health endpoint (MLflow's /health, Prefect's /api/health): one poll
loop with a deadline, so no caller hangs on a dead or never-starting server."""

from __future__ import annotations

import http.client
import time
import urllib.request
from collections.abc import Callable


class Unhealthy(RuntimeError):
    """`url` never answered 200 in time, or its server exited first; the message names the URL
    and the last error seen."""

    def __init__(self, url: str, reason: str, last: str) -> None:
        super().__init__(f"{url}: {reason} (last: {last})")
        self.url, self.reason, self.last = url, reason, last


def wait_healthy(
    url: str,
    timeout: float,
    *,
    interval: float = 0.2,
    request_timeout: float = 2.0,
    running: Callable[[], bool] | None = None,
) -> None:
    """GET `url` every `interval` seconds until it answers 200. Raise `Unhealthy` once
    `timeout` seconds pass, or at once when `running()` says the server process exited."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        if running is not None and not running():
            raise Unhealthy(url, "the server exited before answering", last)
        left = deadline - time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=max(min(request_timeout, left), 0.1)) as r:
                if r.status == 200:
                    return
                last = f"HTTP {r.status}"
        except (OSError, http.client.HTTPException) as e:  # refused, timed out, not HTTP
            last = str(e)
        left = deadline - time.monotonic()
        if left <= 0:
            raise Unhealthy(url, f"no 200 within {timeout:g} s", last)
        time.sleep(min(interval, left))  # the poll interval, bounded by the deadline
