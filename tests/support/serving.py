"""A real ``wm serve`` server (uvicorn on a free loopback port, in a thread) for the HTTP tests."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path

from scripts.serve import ServeConfig, make_server


@contextmanager
def serving(checkpoint: Path | str, **settings):
    """Serve ``checkpoint`` with ``settings`` (ServeConfig fields); yields the base URL, stops the server after."""
    server, sock, info = make_server(ServeConfig(checkpoint=str(checkpoint), port=0, device="cpu", **settings))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start within 20 s"
    try:
        yield info["url"]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
