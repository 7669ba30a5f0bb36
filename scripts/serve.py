"""Serve any saved model's policy over HTTP: sessions with server-side state, batched into shared forward passes.

``--checkpoint`` is a shipped name, an exported model directory or a training run, read by ``worldmodels.load``.
Binds ``127.0.0.1`` by default; any other host needs ``--token`` (or ``WM_SERVE_TOKEN``), and with a token every
endpoint but ``/healthz`` needs ``Authorization: Bearer <token>``. ``--port 0`` picks a free port; the URL
it bound is printed first. ``--env ID`` checks at load time that ID's spaces are the model's. Connections are
capped below the open-file limit and closed when their headers take longer than ``--header-timeout-s``
(:mod:`worldmodels.serving.connections`). Endpoints and encodings: :mod:`worldmodels.serving.app` and the
README's serving section.
"""

from __future__ import annotations

from dataclasses import dataclass

from worldmodels.serving.tokens import TOKEN_ENV, token_from
from worldmodels.checkpoint import allow_unverified_arg
from worldmodels.config import arg, threads_arg
from worldmodels.pretrained import make_env_for
from worldmodels.profiling import resolve_device, set_threads
from worldmodels.registry import load
from worldmodels.serving import SessionSettings, create_app
from worldmodels.serving.connections import ACCEPT_BACKLOG, connection_cap, guarded_protocol
from worldmodels.serving.sessions import MAX_IDLE_TIMEOUT_S, MAX_WAIT_MS
from worldmodels.serving.sockets import bind, is_loopback, url_of


@dataclass
class ServeConfig:
    checkpoint: str = arg("takecover-worldmodels-cpu", "a shipped model name, an exported model directory or a run directory")
    env: str = arg("", "env id the clients act in: checked at load time (made once with the model's env settings) "
                       "to have the model's observation and action spaces; empty = no check")
    host: str = arg("127.0.0.1", "interface to bind; a non-loopback host (e.g. 0.0.0.0) requires --token")
    port: int = arg(8000, "TCP port; 0 picks a free one (printed)", minimum=0, maximum=65535)
    token: str = arg("", f"bearer token every endpoint but /healthz requires; empty = ${TOKEN_ENV}, else no auth")
    max_sessions: int = arg(64, "sessions open at once; one more is refused with 429", minimum=1, maximum=100_000)
    idle_timeout_s: float = arg(300.0, "a session unused this long (seconds) expires", above=0.0,
                                maximum=MAX_IDLE_TIMEOUT_S)
    max_batch: int = arg(32, "most sessions stepped in one forward pass", minimum=1, maximum=4096)
    max_wait_ms: float = arg(5.0, "how long the first queued act waits for others to share its forward pass",
                             minimum=0.0, maximum=MAX_WAIT_MS)
    sample: bool = arg(False, "Dreamer: sample the actor's actions instead of taking its mode")
    seed: int = arg(0, "seed of a model-less (random) policy", minimum=0, maximum=2**32 - 1)
    header_timeout_s: float = arg(10.0, "a connection must send a request's complete headers within this many seconds "
                                        "of connecting (or of its last answer), else it is closed", above=0.0,
                                  maximum=600.0)
    max_connections: int = arg(0, "connections open at once; at the cap a new one replaces the oldest one not in a "
                                  "request, else gets 503; 0 = half of what the open-file limit (ulimit -n) leaves",
                               minimum=0, maximum=1_000_000)
    device: str = arg("auto", "torch device of the model: auto, cpu or cuda")
    threads: str = threads_arg("1", "1 keeps a small shared CPU from thrashing")
    allow_unverified: bool = allow_unverified_arg()


CONFIG = ServeConfig


def check_host(host: str, token: str) -> None:
    if not is_loopback(host) and not token:
        raise ValueError(f"--host {host} is not a loopback address; serving it without auth would expose the model "
                         f"to the network: pass --token T (or set {TOKEN_ENV}), or use --host 127.0.0.1")


def make_server(config: ServeConfig):
    """``(uvicorn.Server, bound socket, info)`` for ``config``; ``server.run(sockets=[sock])`` serves until stopped."""
    import uvicorn  # deferred: only serving needs the ASGI server

    token = token_from(config.token)
    check_host(config.host, token)  # before loading anything: a refused host costs nothing
    cap = connection_cap(config.max_connections)
    set_threads(config.threads)  # measured: two OpenMP threads on 2 busy cores made one act ~20x slower than one
    model = load(config.checkpoint, resolve_device(config.device), allow_unverified=config.allow_unverified)
    if config.env:  # refused here in one line, not as a 4xx on every act of a client in another env
        make_env_for(model, config.env, 1, seed=config.seed).close()
    settings = SessionSettings(max_sessions=config.max_sessions, idle_timeout_s=config.idle_timeout_s,
                               max_batch=config.max_batch, max_wait_ms=config.max_wait_ms)
    app = create_app(model, settings=settings, token=token, name=config.checkpoint, sample=config.sample,
                     seed=config.seed)
    sock = bind(config.host, config.port, backlog=ACCEPT_BACKLOG)
    # The guarded h11 protocol closes half-open connections and caps them below the open-file limit; no
    # websockets, which would leave the guard's bookkeeping.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5,
                                           http=guarded_protocol(cap, config.header_timeout_s), ws="none",
                                           backlog=ACCEPT_BACKLOG))
    info = {"url": url_of(sock), "checkpoint": config.checkpoint, "family": model.family, "env_id": model.env_id,
            "auth": bool(token), "max_connections": cap}
    return server, sock, info


def run(config: ServeConfig) -> dict:
    server, sock, info = make_server(config)
    print(f"wm serve: {info['checkpoint']} ({info['family']}, {info['env_id']}) on {info['url']} "
          f"({'bearer token required' if info['auth'] else 'no auth: loopback only'}); Ctrl-C stops", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return info
