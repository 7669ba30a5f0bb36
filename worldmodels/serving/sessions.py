"""Server-side sessions: one recurrent policy state per client, all clients stepped in shared forward passes.

A :class:`SessionPool` owns a :class:`~worldmodels.core.Policy` and a worker thread. Each ``act`` request
of a session is queued; the worker takes the first pending request, waits at most ``max_wait_ms`` for
others (up to ``max_batch``), and steps them all in ONE ``policy.act`` call::

    sessions   s_0     s_1     s_2            (each: state, steps taken, last use)
    obs        o_0     o_1     o_2      ->    stacked  (B, H, W, C) uint8
    state      x_0     None    x_2      ->    merged   (B, ...): None rows get a placeholder, is_first True
    act        policy.act(obs, is_first (B,), state)  ->  model actions (B, A), new state (B, ...)
    back       a_0     a_1     a_2      <-    env actions (spec.to_env), new state split into (1, ...) rows

A policy restarts its carry where ``is_first`` is set (the :class:`~worldmodels.core.Policy` contract), so a
placeholder's values are never read: the first step of a session is the same whether it is batched with
older sessions or not. Sessions are capped in number and expire after ``idle_timeout_s`` without a request.
"""

from __future__ import annotations

import math
import queue
import secrets
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from worldmodels.core import Policy, PolicyState


MAX_WAIT_MS = 10_000.0  # a batching window past this is a mistake (and inf overflows the queue's timeout)
MAX_IDLE_TIMEOUT_S = 7 * 24 * 3600.0


class ServeError(Exception):
    """A request that cannot be served: an HTTP status and a one-line message naming what is expected."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class SessionSettings:
    """Limits of a :class:`SessionPool` (the ``wm serve`` flags of the same names)."""

    max_sessions: int = 64
    idle_timeout_s: float = 300.0
    max_batch: int = 32
    max_wait_ms: float = 5.0


@dataclass
class Session:
    """One client's carry: the policy state (``None`` before its first step) and the steps it has taken."""

    id: str
    last_used: float
    state: PolicyState = None
    steps: int = 0
    busy: bool = False  # an act is queued or running: its result is the state the next act must start from


@dataclass
class _Request:
    session: Session
    obs: np.ndarray  # (H, W, C) uint8
    future: Future = field(default_factory=Future)


# ---------------------------------------------------------------------------------------------- state batching


def _map(fn: Callable[..., torch.Tensor], *trees: Any) -> Any:
    """Apply ``fn`` leaf-wise over equally shaped dicts / tuples / lists of tensors (``None`` stays ``None``)."""
    first = trees[0]
    if isinstance(first, dict):
        return {key: _map(fn, *(tree[key] for tree in trees)) for key in first}
    if isinstance(first, (tuple, list)):
        return type(first)(_map(fn, *parts) for parts in zip(*trees))
    if first is None:
        return None
    return fn(*trees)


def merge_states(states: Sequence[PolicyState]) -> tuple[PolicyState, torch.Tensor]:
    """Per-session states, each ``(1, ...)`` or ``None`` -> ``(batched state (B, ...) or None, is_first (B,))``.

    ``None`` rows (a session's first step) are filled with zeros shaped like another row and flagged
    ``is_first``, which makes the policy restart them; all ``None`` gives ``None``.
    """
    is_first = torch.tensor([state is None for state in states], dtype=torch.bool)
    template = next((state for state in states if state is not None), None)
    if template is None:
        return None, is_first
    placeholder = _map(torch.zeros_like, template)
    rows = [placeholder if state is None else state for state in states]
    return _map(lambda *parts: torch.cat(parts, 0), *rows), is_first


def split_state(state: PolicyState, batch_size: int) -> list[PolicyState]:
    """A batched state ``(B, ...)`` -> ``B`` states ``(1, ...)``; cloned, so a session never pins the whole batch."""
    return [_map(lambda value, i=i: value[i:i + 1].clone(), state) for i in range(batch_size)]


def act_batch(policy: Policy, obs: torch.Tensor, states: Sequence[PolicyState]) -> tuple[torch.Tensor, list[PolicyState]]:
    """One forward pass for ``B`` sessions: ``obs (B, H, W, C)`` uint8 -> ``(model actions (B, A), B new states)``."""
    B = obs.shape[0]
    assert len(states) == B, f"act_batch: {B} observations but {len(states)} states"
    state, is_first = merge_states(states)
    with torch.no_grad():
        action, new_state = policy.act(obs, is_first, state)
    assert action.shape[0] == B, f"act_batch: policy returned actions {tuple(action.shape)} for {B} observations"
    return action.detach().cpu(), split_state(new_state, B)


# ---------------------------------------------------------------------------------------------- the pool


class SessionPool:
    """Sessions of one policy and the worker thread that batches their steps (see the module doc).

    ``clock`` (seconds, monotonic) is injectable so that idle expiry can be tested without sleeping.
    """

    def __init__(self, policy: Policy, settings: SessionSettings = SessionSettings(), *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # `not (a <= x <= b)` is also true for NaN
        if not (settings.max_sessions >= 1 and settings.max_batch >= 1
                and 0 < settings.idle_timeout_s <= MAX_IDLE_TIMEOUT_S and 0 <= settings.max_wait_ms <= MAX_WAIT_MS):
            raise ValueError(f"session settings need max_sessions >= 1, max_batch >= 1, 0 < idle_timeout_s <= "
                             f"{MAX_IDLE_TIMEOUT_S:g} and 0 <= max_wait_ms <= {MAX_WAIT_MS:g}; got {settings}")
        self.policy, self.settings, self.clock = policy, settings, clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._counts = {"forward_passes": 0, "acts": 0, "max_batch_seen": 0, "expired": 0}
        self._worker = threading.Thread(target=self._loop, name="wm-serve-batcher", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ sessions

    def create(self) -> Session:
        with self._lock:
            self._expire()
            if len(self._sessions) >= self.settings.max_sessions:
                raise ServeError(429, f"{len(self._sessions)} sessions open, the server's limit (--max-sessions "
                                      f"{self.settings.max_sessions}); DELETE finished sessions or wait "
                                      f"{self.settings.idle_timeout_s:g} s for idle ones to expire")
            session = Session(id=secrets.token_hex(8), last_used=self.clock())
            self._sessions[session.id] = session
            return session

    def get(self, session_id: str) -> Session:
        with self._lock:
            self._expire()
            if session_id not in self._sessions:
                raise self._unknown(session_id)
            return self._sessions[session_id]

    def delete(self, session_id: str) -> None:
        with self._lock:
            self._expire()
            if self._sessions.pop(session_id, None) is None:
                raise self._unknown(session_id)

    def _unknown(self, session_id: str) -> ServeError:
        return ServeError(404, f"unknown session {session_id!r} (never created, deleted, or idle for more than "
                               f"{self.settings.idle_timeout_s:g} s); POST /v1/sessions for a new one")

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._sessions)

    def _expire(self) -> None:
        """Drop sessions idle for longer than the timeout (callers hold the lock); busy ones are in use."""
        cutoff = self.clock() - self.settings.idle_timeout_s
        for session_id in [s.id for s in self._sessions.values() if s.last_used < cutoff and not s.busy]:
            del self._sessions[session_id]
            self._counts["expired"] += 1

    # ------------------------------------------------------------------ acting

    def submit(self, session_id: str, obs: np.ndarray) -> Future:
        """Queue one step of a session; the future gives ``(env action, step index)`` (0 for its first step)."""
        session = self.get(session_id)
        with self._lock:
            if session.busy:
                raise ServeError(409, f"session {session_id!r} already has an act in flight; send its next "
                                      f"observation after the previous action came back")
            session.busy, session.last_used = True, self.clock()
        request = _Request(session, obs)
        self._queue.put(request)
        return request.future

    def act(self, session_id: str, obs: np.ndarray, timeout: float | None = None) -> tuple[Any, int]:
        """Blocking :meth:`submit`: ``(env action, step index)``."""
        return self.submit(session_id, obs).result(timeout)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            self._expire()
            counts = dict(self._counts)
            sessions = len(self._sessions)
        mean = counts["acts"] / counts["forward_passes"] if counts["forward_passes"] else 0.0
        return {"sessions": sessions, **counts, "mean_batch": round(mean, 3)}

    def close(self) -> None:
        """Stop the worker after the requests already queued."""
        self._queue.put(None)
        self._worker.join(timeout=10)

    def _collect(self, batch: list[_Request]) -> bool:
        """Add to ``batch`` (its first request) whatever arrives within ``max_wait_ms``, up to ``max_batch``;
        whether to stop. In place, so that a fault midway still knows every request it took off the queue."""
        deadline = time.monotonic() + self.settings.max_wait_ms / 1000
        while len(batch) < self.settings.max_batch:
            remaining = deadline - time.monotonic()
            try:  # past the deadline, still take what is already queued: it costs no wait
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return True
            batch.append(item)
        return False

    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            try:
                stop = self._collect(batch)
                self._step(batch)
            except Exception as error:  # noqa: BLE001 - a fault of the batcher must not hang this and every later act
                line = (str(error).strip().splitlines() or [""])[0]
                self._fail(batch, ServeError(500, f"internal error in the batcher ({type(error).__name__}: {line}); "
                                                  f"this act was not taken, send it again"))

    def _fail(self, batch: list[_Request], error: Exception) -> None:
        """Answer every request of ``batch`` not answered yet with ``error``; their sessions may act again."""
        with self._lock:
            for request in batch:
                request.session.busy = False
        for request in batch:
            if not request.future.done():
                request.future.set_exception(error)

    def _step(self, batch: list[_Request]) -> None:
        B = len(batch)
        try:
            obs = torch.from_numpy(np.stack([request.obs for request in batch]))  # (B, H, W, C) uint8
            actions, states = act_batch(self.policy, obs, [request.session.state for request in batch])
            env_actions = self.policy.action_spec.to_env(actions)  # (B,) int64 or (B, A) float32: the driver's encoding
        except Exception as error:  # noqa: BLE001 - every waiting client gets the failure, the worker lives on
            self._fail(batch, error)
            return
        with self._lock:
            now = self.clock()
            self._counts["forward_passes"] += 1
            self._counts["acts"] += B
            self._counts["max_batch_seen"] = max(self._counts["max_batch_seen"], B)
            results = []
            for request, state, env_action in zip(batch, states, env_actions):
                session = request.session
                results.append((env_action.tolist(), session.steps))  # Discrete: an int; Box: a list of floats
                session.state, session.steps, session.last_used, session.busy = state, session.steps + 1, now, False
        for request, result in zip(batch, results):
            request.future.set_result(result)
