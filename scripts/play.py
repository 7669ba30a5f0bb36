"""Play inside a saved world model's dream in a browser: keyboard or the model's policy acts, the real env beside it.

``--checkpoint`` is a shipped name, an exported model directory or a training run (``worldmodels.load``). The
page starts from a real frame (the env reset with a seed, filtered by the model) and then shows the model's
dream at the env's frame rate next to the real env playing the same actions, with the predicted reward and
termination probability of every step. Loopback only (the page has no auth); ``--port 0`` (the default) picks a
free port, and the URL is printed. Endpoints and time alignment: :mod:`worldmodels.serving.play`; docs/play.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from worldmodels.checkpoint import allow_unverified_arg
from worldmodels.config import arg, threads_arg
from worldmodels.dreams import dream_temperature
from worldmodels.profiling import resolve_device, set_threads
from worldmodels.registry import load
from worldmodels.serving.play import MAX_SEED, PlaySettings, create_play_app
from worldmodels.serving.sockets import bind, is_loopback, url_of


@dataclass
class PlayConfig:
    checkpoint: str = arg("takecover-worldmodels-cpu", "a shipped model name, an exported model directory or a run directory")
    env: str = arg("", "env id the real panel plays; empty = the model's own (another needs the model's spaces)")
    host: str = arg("127.0.0.1", "loopback interface to bind (127.0.0.1, ::1 or localhost); the page has no auth")
    port: int = arg(0, "TCP port; 0 picks a free one (the URL is printed)", minimum=0, maximum=65535)
    seed: int = arg(0, "seed of the first reset of the real env; every later reset takes the next one",
                    minimum=0, maximum=MAX_SEED)
    fps: float = arg(0.0, "frames a second the page asks for; 0 = the env's own (60/frameskip for Atari, else its "
                          "render_fps / frameskip)", minimum=0.0, maximum=240.0)
    temperature: Optional[float] = arg(None, "World Models: M's sampling temperature in the dream (Sec. 4.4; 0 = each "
                                             "step's most likely component mean); None = the one C was trained at "
                                             "(saved with the model), else 1", minimum=0.0, maximum=10.0)
    sample: bool = arg(False, "Dreamer: the policy samples the actor instead of taking its mode")
    max_sessions: int = arg(4, "pages playing at once; a new page takes the slot of the least recently used one",
                            minimum=1, maximum=64)
    idle_timeout_s: float = arg(600.0, "a page idle this long (seconds) loses its session (its envs are closed)",
                                above=0.0, maximum=86_400.0)
    device: str = arg("cpu", "torch device of the model: auto, cpu or cuda")
    threads: str = threads_arg("1")
    allow_unverified: bool = allow_unverified_arg()


CONFIG = PlayConfig


def make_server(config: PlayConfig):
    """``(uvicorn.Server, bound socket, info)`` for ``config``; ``server.run(sockets=[sock])`` serves until stopped."""
    import uvicorn  # deferred: only serving needs the ASGI server

    if not is_loopback(config.host):  # before loading anything: a refused host costs nothing
        raise ValueError(f"--host {config.host}: wm play binds a loopback address only (127.0.0.1, ::1 or "
                         f"localhost), since the page has no auth; use `wm serve --token` to expose a policy")
    set_threads(config.threads)
    model = load(config.checkpoint, resolve_device(config.device), allow_unverified=config.allow_unverified)
    temperature = dream_temperature(model.config) if config.temperature is None else config.temperature
    settings = PlaySettings(max_sessions=config.max_sessions, idle_timeout_s=config.idle_timeout_s,
                            seed=config.seed, temperature=temperature, fps=config.fps, env_id=config.env)
    app = create_play_app(model, settings=settings, name=config.checkpoint, sample=config.sample)
    sock = bind("127.0.0.1" if config.host == "localhost" else config.host, config.port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5,
                                           ws="none"))
    info = {"url": url_of(sock) + "/", "checkpoint": config.checkpoint, "family": model.family,
            "env_id": app.state.pool.env_id, "fps": app.state.pool.fps}
    return server, sock, info


def run(config: PlayConfig) -> dict:
    server, sock, info = make_server(config)
    print(f"wm play: {info['checkpoint']} ({info['family']}, {info['env_id']}, {info['fps']:g} fps) at {info['url']}"
          f" - open it in a browser; Ctrl-C stops", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return info
