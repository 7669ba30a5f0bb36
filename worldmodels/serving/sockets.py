"""Listening sockets for the HTTP servers (``wm serve``, ``wm play``): bound before serving, so the port can be
printed, and made so that every answer leaves at once.

A socket made without ``proto=IPPROTO_TCP`` reports proto 0, and asyncio (which uvicorn serves on) sets
``TCP_NODELAY`` only on accepted sockets whose proto says TCP. Without it each small response waited for Nagle's
algorithm and the client's delayed ACK: 45 ms per request on loopback here, 5.6 ms with it (measured by ``wm play``'s
author on a shared 2-core EPYC).
"""

from __future__ import annotations

import ipaddress
import socket


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (a hostname may resolve to anything, so it does not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int, *, backlog: int = 16) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one); a port in use is a one-line ValueError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # IPPROTO_TCP: see the module docstring
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ValueError(f"cannot bind {host}:{port} ({error.strerror}); choose another --port, or --port 0 for a "
                         "free one") from None
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://HOST:PORT`` of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
