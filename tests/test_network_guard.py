"""The conftest network guard itself: blocks, records, and allows loopback only when marked."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")


def test_outside_connections_are_refused_and_recorded(network_guard: Any) -> None:
    for attempt in (
        lambda: socket.create_connection(("203.0.113.7", 443), timeout=0.1),
        lambda: socket.getaddrinfo("huggingface.co", 443),
        lambda: socket.socket().connect(("198.51.100.1", 80)),
        lambda: socket.socket().connect_ex(("198.51.100.1", 80)),
    ):
        with pytest.raises(RuntimeError, match="network access is blocked in tests"):
            attempt()
    assert len(network_guard.attempts) == 4
    network_guard.attempts.clear()  # or this test would fail at teardown, as it should


def test_loopback_is_refused_without_the_marker(network_guard: Any) -> None:
    with pytest.raises(RuntimeError, match="blocked"):
        socket.create_connection(("127.0.0.1", 9), timeout=0.1)
    network_guard.attempts.clear()


def serve_once(server: socket.socket) -> None:
    conn, _ = server.accept()
    with conn:
        conn.sendall(b"hello")


@pytest.mark.allow_network
def test_marker_allows_loopback_only(network_guard: Any) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        thread = threading.Thread(target=serve_once, args=(server,), daemon=True)
        thread.start()
        with socket.create_connection(server.getsockname(), timeout=5) as client:
            assert client.recv(5) == b"hello"
        thread.join(5)
    assert socket.getaddrinfo("localhost", 80)
    with pytest.raises(RuntimeError, match="blocked"):
        socket.create_connection(("203.0.113.7", 443), timeout=0.1)
    network_guard.attempts.clear()


def test_a_swallowed_attempt_still_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.read_text(encoding="utf-8").replace('pytest_plugins = ("pytester",)', ""))
    pytester.makepyfile(
        test_inner="""
        import socket

        def test_library_that_hides_errors():
            try:
                socket.create_connection(("203.0.113.7", 443), timeout=0.1)
            except Exception:
                pass  # a library falling back quietly

        def test_innocent():
            assert True
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)  # the quiet test errors at teardown
    result.stdout.fnmatch_lines(["*network access was attempted*203.0.113.7*"])
