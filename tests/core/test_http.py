"""The one health poll: returns on the first 200, names the URL when it gives up."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from slimline.core.http import Unhealthy, wait_healthy
from tests.support.servers import free_port


@pytest.fixture
def server() -> Iterator[tuple[str, list[int]]]:
    """A /health that answers 503 twice, then 200; `codes` records what it answered."""
    codes: list[int] = []

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            code = 503 if len(codes) < 2 else 200
            codes.append(code)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/health", codes
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_returns_once_the_server_answers_200(server):
    url, codes = server
    wait_healthy(url, timeout=30, interval=0.01)
    assert codes == [503, 503, 200]


def test_a_dead_url_times_out_naming_the_url_and_the_last_error():
    url = f"http://127.0.0.1:{free_port()}/api/health"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(Unhealthy) as raised:
        wait_healthy(url, timeout=0.5, interval=0.05)
    assert time.monotonic() - started < 10
    assert raised.value.url == url
    assert str(raised.value).startswith(f"{url}: no 200 within 0.5 s (last: ")
    assert "refused" in raised.value.last.lower()


def test_an_exited_server_stops_the_wait_at_once(server):
    url, codes = server
    started = time.monotonic()
    with pytest.raises(Unhealthy, match="exited before answering"):
        wait_healthy(url, timeout=60, running=lambda: False)
    assert time.monotonic() - started < 10 and codes == []
