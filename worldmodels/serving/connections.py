"""Connection limits of ``wm serve``: a header timeout and a cap on open connections below the open-file limit.

uvicorn's h11 protocol keeps a connection that never finishes its request headers open forever, and its
``limit_concurrency`` only answers 503 once headers are complete. So ~1,100 half-open sockets exhausted a
1,024-file server (``accept(): Too many open files``) and every client, token or not, timed out. Here each
connection is in one of three states::

    fresh    connected, no request yet         -> closed if its headers are not complete within the timeout
    idle     answered, waiting for the next    -> the same deadline, counted from its last answer
    busy     headers received, in a request    -> never evicted (the app's own limits apply)

At the cap a new connection evicts the oldest fresh one (else the oldest idle one), so a flood of half-open
sockets only replaces itself while clients that send their requests promptly keep being served; when every
connection is busy, the new one gets a one-line 503 at once instead of waiting in the accept backlog.
"""

from __future__ import annotations

import asyncio
import json
import resource
from typing import Any

ACCEPT_BACKLOG = 128  # asyncio accepts up to this many sockets per wake-up before any protocol can count them
RESERVED_FILES = 64  # what the server holds besides connections: libraries, the model's files, pipes, logs
LINGER_S = 1.0  # how long a refused connection may still read, so that its 503 arrives instead of a TCP reset


def connection_cap(max_connections: int = 0) -> int:
    """The most connections open at once: ``max_connections``, or with 0 half of the files the open-file limit
    leaves; the other half covers sockets accepted or closing but not yet counted (an accept burst, evictions)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    files = 1 << 20 if soft == resource.RLIM_INFINITY else soft
    room = (files - RESERVED_FILES) // 2
    if room < 8:
        raise ValueError(f"the open-file limit (ulimit -n {soft}) leaves room for {max(room, 0)} connections; "
                         f"raise it to at least {RESERVED_FILES + 16} (e.g. ulimit -n 1024) before `wm serve`")
    if max_connections > room:
        raise ValueError(f"--max-connections {max_connections} needs about {2 * max_connections + RESERVED_FILES} "
                         f"open files but the limit is {soft} (ulimit -n); pass --max-connections {room} or less, "
                         f"0 for that automatically, or raise ulimit -n")
    return max_connections or room


class _Limits:
    """What the connections of one server share: the cap, the timeout, and who is waiting for headers."""

    def __init__(self, cap: int, header_timeout_s: float) -> None:
        self.cap, self.header_timeout_s = cap, header_timeout_s
        self.live: set[Any] = set()  # every counted connection (refused ones are not)
        self.fresh: dict[Any, None] = {}  # insertion-ordered: the oldest first
        self.idle: dict[Any, None] = {}
        self.refused = 0  # refused connections still open (lingering): they hold files too

    def evict_one(self) -> bool:
        """Close the oldest fresh (else idle) connection; ``False`` when all are busy in a request."""
        for waiting in (self.fresh, self.idle):
            if waiting:
                victim = next(iter(waiting))
                victim.drop()
                return True
        return False


def guarded_protocol(cap: int, header_timeout_s: float) -> type:
    """An h11 protocol class (``uvicorn.Config(http=...)``) enforcing ``cap`` and ``header_timeout_s`` across
    every connection of the server it is given to (one class per server: the state lives in the closure)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol  # deferred: only a running server needs uvicorn

    limits = _Limits(cap, header_timeout_s)
    refusal = json.dumps({"error": f"all {cap} connections the server allows (--max-connections {cap}) are in a "
                                   f"request; retry shortly"}).encode()
    response_503 = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
                    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(refusal), refusal))

    class GuardedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _marker: Any = None  # the request cycle current when waiting began: a new one means new headers
        _refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(limits.live) >= limits.cap and not limits.evict_one():
                self._refused = True
                limits.refused += 1
                transport.write(response_503)
                if limits.refused > ACCEPT_BACKLOG:  # a flood of refusals: no lingering, or they would exhaust files
                    transport.close()
                    return
                if transport.can_write_eof():
                    transport.write_eof()  # the answer, then EOF; closing at once could reset it away
                self.loop.call_later(LINGER_S, transport.close)
                return
            limits.live.add(self)
            self._wait(limits.fresh)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # read and dropped: the request is not served
            super().data_received(data)
            if self._deadline is not None and self.cycle is not self._marker:
                self._stop_waiting()  # complete headers: busy in a request from here

        def on_response_complete(self) -> None:
            marker = self.cycle
            super().on_response_complete()
            if not self.transport.is_closing() and self.cycle is marker:  # no pipelined request parsed yet
                self._wait(limits.idle)

        def connection_lost(self, exc: Exception | None) -> None:
            limits.refused -= self._refused
            self._stop_waiting()
            limits.live.discard(self)
            super().connection_lost(exc)

        def _wait(self, waiting: dict[Any, None]) -> None:
            self._stop_waiting()
            self._marker = self.cycle
            waiting[self] = None
            # From now, not from the last byte: a request trickled a byte at a time cannot extend its deadline.
            self._deadline = self.loop.call_later(limits.header_timeout_s, self.drop)

        def _stop_waiting(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            limits.fresh.pop(self, None)
            limits.idle.pop(self, None)

        def drop(self) -> None:
            """Close a connection that is not in a request (a timed-out or evicted one); it stops counting now."""
            self._stop_waiting()
            limits.live.discard(self)
            if not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol
