"""The one way tests wait: poll for an event (a file, a log line, a port, a dead process) with a
generous timeout. Never a bare sleep standing in for "the other side is ready by now".

Child processes of a test import it too (they get the repo root on sys.path).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
INTERVAL = 0.02  # seconds between polls: a poll is a stat() or a connect(), cheap


def wait_for(
    condition: Callable[[], T],
    timeout: float = 60.0,
    what: str = "the event",
    interval: float = INTERVAL,
) -> T:
    """Call `condition` until it returns something truthy and return that; raise TimeoutError
    naming `what` after `timeout` seconds. The timeout is a safety net for a broken run, far
    above the time the event takes on a loaded machine, never a measurement. A condition that
    asks a server takes a longer `interval`."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}")
        time.sleep(interval)
