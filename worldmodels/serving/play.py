"""Play inside a world model's dream from a browser (``wm play``): one session per page, the real env beside it.

::

    GET  /                       the page (play_page.html, shipped with the package)
    GET  /play/info              model, env, frame rate, every action with its meaning and keys
    POST /play/reset             {"session"?: id, "seed"?: int} -> that (or a new) session at a real first frame
    POST /play/step              {"session": id, "action": int | [A floats] | "policy"} -> the next frames
    GET  /play/log?session=ID    the actions taken since the session's reset, and who chose each
    POST /play/close             {"session": id}   (the page sends it when it is closed)

A frame travels as base64 of its raw ``H x W x 3`` uint8 bytes (row-major RGB): the page paints it on a
canvas with no image decoder in between, and ``H * W * 3`` bytes at 64 x 64 are 12 KB a frame.

Time alignment of a session (the latent step of :mod:`worldmodels.core`, rows as in DESIGN.md)::

    reset(seed):  obs_0 = env.reset(seed)    s_0 = observe(obs_0, is_first)      dream frame decode(s_0)
    step(a_t):    s_{t+1}, r_{t+1}, c_{t+1} = imagine(s_t, [a_t], 1)             dream frame decode(s_{t+1})
                  obs_{t+1}, reward_{t+1}, terminated_{t+1} = env.step(a_t)      real frame obs_{t+1}

After ``obs_0`` the dream never sees a real frame: the page shows the model's own forecast under the actions
the user (or its policy) chose, next to what the env does with the same actions. ``"policy"`` acts with the
model's head on the DREAM's feature ``f_t`` (C or the Dreamer actor, as in the dreams they trained in); a
model without a head acts uniformly at random. World Models' M samples at ``temperature`` (Sec. 4.4 of Ha &
Schmidhuber 2018: 1 is M's own distribution, higher makes the dream harder). Sessions run one at a time on
one worker thread: the model is shared, and VizDoom wants its game driven from the thread that made it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException

from worldmodels.core import LatentPolicy, State, WorldModel, index_state, state_device
from worldmodels.envs import agent_frameskip, is_atari, make
from worldmodels.envs.options import resolve_options
from worldmodels.envs.spaces import check_fits
from worldmodels.dreams import sampling
from worldmodels.policies import ModelPolicy, RandomPolicy, clip_to_space
from worldmodels.registry import Pretrained
from worldmodels.serving.app import read_body
from worldmodels.serving.sessions import ServeError

ATARI_HZ = 60.0  # the ALE emulates 60 frames a second; an agent step is `frameskip` of them
DEFAULT_FPS = 30.0  # an env whose metadata names no render_fps
MAX_SEED = 2**31 - 1
CONTROLS = ("UP", "DOWN", "LEFT", "RIGHT", "FIRE")  # the page maps arrow keys and space to these
# VizDoom button names -> the control a player would reach for (its other names already contain one of CONTROLS)
SYNONYMS = {"ATTACK": "FIRE", "USE": "FIRE", "FORWARD": "UP", "BACKWARD": "DOWN"}


@dataclass(frozen=True)
class PlaySettings:
    """Limits and sampling of the play sessions (the ``wm play`` flags of the same names)."""

    max_sessions: int = 4
    idle_timeout_s: float = 600.0
    seed: int = 0
    temperature: float = 1.0
    fps: float = 0.0  # 0: the env's own rate (env_fps)
    env_id: str = ""  # the real env; empty: the model's own (another must have the model's spaces: check_fits)


def action_meanings(env: Any, n: int) -> list[str]:
    """The env's name for each of its ``n`` discrete actions: ALE's meanings, VizDoom's pressed buttons."""
    env = env.unwrapped
    if hasattr(env, "get_action_meanings"):  # ALE
        return [str(name) for name in env.get_action_meanings()]
    button_map = getattr(env, "button_map", None)  # VizDoom: action i presses the buttons set in button_map[i]
    if button_map is not None and len(button_map) == n and hasattr(env, "game"):
        buttons = [button.name for button in env.game.get_available_buttons()][-len(button_map[0]):]
        return ["+".join(name for name, pressed in zip(buttons, row) if pressed) or "NOOP" for row in button_map]
    return [f"ACTION_{i}" for i in range(n)]


def action_controls(meaning: str) -> list[str]:
    """The keys that choose an action: ``"UPRIGHTFIRE"`` -> ``["UP", "RIGHT", "FIRE"]``, ``"MOVE_LEFT"`` -> ``["LEFT"]``."""
    text = meaning.upper()
    for word, control in SYNONYMS.items():
        text = text.replace(word, control)
    return [control for control in CONTROLS if control in text]


def env_fps(env_id: str, env_options: dict[str, Any], env: Any) -> float:
    """Agent steps per second of real time: 60 / frameskip for ALE (15 at frameskip 4), else render_fps / frameskip."""
    options = dict(env_options)
    frameskip = agent_frameskip(env_id, resolve_options(options.pop("image_size", 64), options))
    base = ATARI_HZ if is_atari(env_id) else float(env.metadata.get("render_fps") or DEFAULT_FPS)
    return base / frameskip


def frame_b64(frame: torch.Tensor | np.ndarray) -> str:
    """uint8 ``(H, W, 3)`` -> base64 of its raw row-major bytes."""
    array = frame.cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.uint8).tobytes()).decode("ascii")


class PlaySession:
    """One page's game: the dream's latent state, the real env playing the same actions, and the action log."""

    def __init__(self, session_id: str, model: Pretrained, head: LatentPolicy, make_env: Callable[[], Any],
                 temperature: float) -> None:
        self.id, self.model, self.head, self.temperature = session_id, model, head, temperature
        self.world_model: WorldModel = model.world_model  # type: ignore[assignment] - checked by PlayPool
        self.spec = model.action_spec
        self.env = make_env()
        self.meanings = action_meanings(self.env, self.spec.dim) if self.spec.discrete else []
        self.state: State | None = None
        self.seed, self.steps, self.log = 0, 0, []
        self.dream_return = self.real_return = 0.0
        self.real_done = False
        self.last_used = time.monotonic()

    @torch.no_grad()
    def reset(self, seed: int) -> dict[str, Any]:
        obs, _ = self.env.reset(seed=seed)  # (H, W, 3) uint8
        device = state_device(self.world_model.initial(1))
        frames = torch.as_tensor(np.asarray(obs), device=device)[None, None]  # (1, 1, H, W, C)
        with sampling(self.world_model, self.temperature):
            _, self.state = self.world_model.observe(frames, None, torch.ones(1, 1, dtype=torch.bool, device=device))
            end = 1.0 - float(self.world_model.predict_cont(self.state)[0])
            dream = self.world_model.decode(self.state)[0]  # (H, W, C): s_0 as the model sees the real frame
        self.seed, self.steps, self.log = seed, 0, []
        self.dream_return = self.real_return = 0.0
        self.real_done = False
        return self._payload(dream, obs, action=None, source="reset", reward=0.0, end=end, real_reward=0.0,
                             terminated=False, truncated=False)

    @torch.no_grad()
    def step(self, action: Any) -> dict[str, Any]:
        """``action``: ``"policy"``, a discrete index, or ``A`` floats (Box) -> the next dream and real frames."""
        assert self.state is not None, "a session is reset when it is made"
        with sampling(self.world_model, self.temperature):
            source = "policy" if action == "policy" else "user"
            if source == "policy":
                model_action = self.head.act_latent(self.world_model.feature(self.state))  # (1, A)
            else:
                model_action = self._model_action(action).to(self.state["action"].device)  # (1, A)
            trajectory = self.world_model.imagine(self.state, model_action[:, None], 1)  # s_t -> s_{t+1}
            self.state = index_state(trajectory.states, (slice(None), 1))  # (1, ...)
            dream = self.world_model.decode(self.state)[0]  # (H, W, C)
        reward, end = float(trajectory.reward[0, 0]), 1.0 - float(trajectory.cont[0, 0])
        env_action = self.spec.to_env(model_action)[0]  # an int64 index, or (A,) float32 inside the bounds
        taken: Any = int(env_action) if self.spec.discrete else [float(v) for v in env_action]
        terminated = truncated = False
        real_reward, obs = 0.0, None
        if not self.real_done:  # a finished real episode stays on its last frame until the next reset
            obs, real_reward, terminated, truncated, _ = self.env.step(taken if self.spec.discrete else env_action)
            real_reward = float(real_reward)
            self.real_done = bool(terminated or truncated)
        self.steps += 1
        self.dream_return += reward
        self.real_return += real_reward
        self.log.append({"step": self.steps, "action": taken, "source": source})
        return self._payload(dream, obs, action=taken, source=source, reward=reward, end=end, real_reward=real_reward,
                             terminated=bool(terminated), truncated=bool(truncated))

    def _model_action(self, action: Any) -> torch.Tensor:
        """A user's action in env encoding -> model encoding ``(1, A)``, or a 422 naming what is accepted."""
        spec, shown = self.spec, repr(action)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."  # the error stays one short line
        if spec.discrete:
            if isinstance(action, bool) or not isinstance(action, int) or not 0 <= action < spec.dim:
                raise ServeError(422, f"action {shown} is not an action of this env; send an int in "
                                      f"[0, {spec.dim}) or \"policy\"")
            return spec.to_model(torch.tensor([action]))
        if not (isinstance(action, list) and len(action) == spec.dim
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < 1e30 for v in action)):
            raise ServeError(422, f"action {shown} is not a Box action; send {spec.dim} finite numbers (clipped to "
                                  f"the Box) or \"policy\"")
        return clip_to_space(spec, torch.tensor([action], dtype=torch.float32))

    def _payload(self, dream: torch.Tensor, obs: Any, *, action: Any, source: str, reward: float, end: float,
                 real_reward: float, terminated: bool, truncated: bool) -> dict[str, Any]:
        self.last_used = time.monotonic()
        meaning = self.meanings[action] if self.meanings and action is not None else ""
        return {"session": self.id, "seed": self.seed, "step": self.steps, "action": action, "meaning": meaning,
                "source": source, "height": int(dream.shape[0]), "width": int(dream.shape[1]),
                "dream": {"frame": frame_b64(dream), "reward": reward, "end_prob": end, "return": self.dream_return},
                "real": {"frame": frame_b64(obs) if obs is not None else None, "reward": real_reward,
                         "return": self.real_return, "terminated": terminated, "truncated": truncated,
                         "done": self.real_done}}

    def close(self) -> None:
        self.env.close()


class PlayPool:
    """At most ``max_sessions`` sessions; a new one takes the slot of the least recently used, idle ones expire.

    Every session method runs on the pool's one worker thread (see the module docstring).
    """

    def __init__(self, model: Pretrained, settings: PlaySettings, *, sample: bool = False) -> None:
        if model.world_model is None:
            raise ValueError(f"{model.path}: holds V alone, without M: a dream needs a world model; train M first")
        if len(model.obs_shape) != 3:
            raise ValueError(f"{model.path}: a {model.family} model of vector observations {tuple(model.obs_shape)} "
                             f"has no frames to dream; wm play needs a pixel world model")
        self.model, self.settings = model, settings
        policy = model.policy(sample=sample, seed=settings.seed)
        self.head: LatentPolicy = policy.head if isinstance(policy, ModelPolicy) and policy.head is not None else \
            RandomPolicy(model.action_spec, seed=settings.seed)
        self.policy_name = type(self.head).__name__
        self.sessions: OrderedDict[str, PlaySession] = OrderedDict()  # least recently used first
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wm-play")
        self.resets = 0
        self.env_id = settings.env_id or model.env_id
        if not self.env_id:
            raise ValueError(f"{model.path}: does not name the env it was trained on; pass one with --env")
        self.env_options = dict(model.env_options or {})
        probe = self.make_env()  # built once here: a wrong env fails at start, not on the first page load
        self.meanings = action_meanings(probe, model.action_spec.dim) if model.action_spec.discrete else []
        self.fps = settings.fps or env_fps(self.env_id, self.env_options, probe)
        probe.close()

    def make_env(self) -> Any:
        env = make(self.env_id, **self.env_options)
        try:
            check_fits(env, self.env_id, obs_shape=self.model.obs_shape, action_spec=self.model.action_spec,
                       model=str(self.model.path))
        except ValueError:
            env.close()
            raise
        return env

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.wrap_future(self.worker.submit(function, *args))

    def info(self, name: str) -> dict[str, Any]:
        spec = self.model.action_spec
        actions = [{"index": i, "meaning": m, "controls": action_controls(m)} for i, m in enumerate(self.meanings)]
        return {"checkpoint": name, "family": self.model.family, "env_id": self.env_id, "fps": self.fps,
                "obs_shape": list(self.model.obs_shape), "discrete": spec.discrete, "actions": actions,
                "policy": self.policy_name, "temperature": self.settings.temperature,
                "max_sessions": self.settings.max_sessions}

    def reset(self, session_id: str | None, seed: int | None) -> dict[str, Any]:
        self._expire()
        session = self.sessions.get(session_id or "")
        if session is None:
            while len(self.sessions) >= self.settings.max_sessions:
                self.sessions.popitem(last=False)[1].close()
            session = PlaySession(secrets.token_hex(8), self.model, self.head, self.make_env,
                                  self.settings.temperature)
            self.sessions[session.id] = session
        self.sessions.move_to_end(session.id)
        if seed is None:
            seed = (self.settings.seed + self.resets) % (MAX_SEED + 1)  # every reset a new, reproducible start
        self.resets += 1
        return session.reset(seed)

    def step(self, session_id: str, action: Any) -> dict[str, Any]:
        started = time.perf_counter()
        payload = self.get(session_id).step(action)
        self.sessions.move_to_end(session_id)
        return {**payload, "server_ms": 1000.0 * (time.perf_counter() - started)}  # the page shows where time goes

    def get(self, session_id: str) -> PlaySession:
        self._expire()
        if session_id not in self.sessions:
            raise ServeError(404, f"no play session {session_id!r} (closed, expired after "
                                  f"{self.settings.idle_timeout_s:g} s idle, or its slot went to another page: at "
                                  f"most {self.settings.max_sessions} at once); press reset for a new one")
        return self.sessions[session_id]

    def close_session(self, session_id: str) -> bool:
        session = self.sessions.pop(session_id, None)
        if session is not None:
            session.close()
        return session is not None

    def _expire(self) -> None:
        now = time.monotonic()
        for session_id in [s.id for s in self.sessions.values() if now - s.last_used > self.settings.idle_timeout_s]:
            self.close_session(session_id)

    def close(self) -> None:
        for session_id in list(self.sessions):
            self.worker.submit(self.close_session, session_id).result()
        self.worker.shutdown(wait=True)


def play_page() -> str:
    """The page's HTML (plain JS, no external resource), shipped as package data next to this module."""
    return resources.files("worldmodels.serving").joinpath("play_page.html").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------- HTTP

MAX_BODY_BYTES = 64 * 1024  # a step is a session id and an action: far below this


def create_play_app(model: Pretrained, *, settings: PlaySettings = PlaySettings(), name: str = "",
                    sample: bool = False) -> FastAPI:
    """The FastAPI app of ``wm play`` (endpoints in the module docstring); its pool is ``app.state.pool``."""
    pool = PlayPool(model, settings, sample=sample)
    info = pool.info(name or (model.path.name if model.path else ""))
    page = play_page()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        pool.close()

    app = FastAPI(title="wm play", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.pool = pool

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, error: ServeError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        message = {404: f"no endpoint {request.method} {request.url.path}; the page is GET /",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(error.status_code, str(error.detail))
        return JSONResponse({"error": message}, status_code=error.status_code)

    @app.exception_handler(Exception)
    async def server_fault(request: Request, error: Exception) -> JSONResponse:
        # A fault of the model or the env (EnvGuard's one line), not of the request: one line for the page.
        line = (str(error).strip().splitlines() or [""])[0]
        return JSONResponse({"error": f"internal error {type(error).__name__}: {line}"}, status_code=500)

    async def body_of(request: Request, *required: str) -> dict[str, Any]:
        raw = await read_body(request, MAX_BODY_BYTES)
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, RecursionError):
            raise ServeError(400, "the body is not JSON; send {\"session\": id, ...}") from None
        if not isinstance(body, dict) or any(key not in body for key in required):
            raise ServeError(422, f"the body must be a JSON object with {', '.join(map(repr, required))}")
        return body

    @app.get("/")
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/play/info")
    async def get_info() -> dict:
        return info

    @app.post("/play/reset")
    async def reset(request: Request) -> dict:
        body = await body_of(request)
        seed = body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
            raise ServeError(422, f"seed {seed!r} must be an int in [0, {MAX_SEED}], or left out for the next one")
        session = body.get("session")
        return await pool.run(pool.reset, session if isinstance(session, str) else None, seed)

    @app.post("/play/step")
    async def step(request: Request) -> dict:
        body = await body_of(request, "session", "action")
        return await pool.run(pool.step, str(body["session"]), body["action"])

    @app.get("/play/log")
    async def log(request: Request) -> dict:
        session = request.query_params.get("session", "")
        if not session:
            raise ServeError(422, "GET /play/log needs ?session=ID (the id POST /play/reset returned)")
        found = await pool.run(pool.get, session)
        return {"session": session, "seed": found.seed, "steps": found.steps, "actions": list(found.log)}

    @app.post("/play/close")
    async def close(request: Request) -> dict:
        body = await body_of(request, "session")
        return {"closed": await pool.run(pool.close_session, str(body["session"]))}

    return app
