"""``make`` / ``make_vector``: any supported env id -> uint8 ``(S, S, 3)`` pixel observations, or its own vectors.

Three families, chosen from the gymnasium registry entry of ``env_id``:

- ALE (``ALE/<Game>-v5``): Machado et al. 2018 settings (see :mod:`worldmodels.envs.options`).
  Single env: ``gymnasium.make(env_id, frameskip=4, repeat_action_probability=0.25, ...)``
  and a ``cv2.INTER_AREA`` resize. Vector env: ale-py's C++ ``AtariVectorEnv`` with the same
  frameskip, sticky actions, frame limit and INTER_AREA resize, so with the same settings
  both give bit-identical frames (tested). Both return the LAST frame of each frameskip
  unless ``maxpool=True`` (both then max-pool the last two frames; also tested identical).
  ``episodic_life=True`` signals ``terminated`` on each life loss and the next episode
  continues the same game (OpenAI baselines' EpisodicLifeEnv); only game over restarts it.
  Differences: with sticky actions or noop starts the same seed gives different random
  draws in the two kinds (reproducible within a kind, not across kinds); after a life
  loss the single env continues with one NOOP inside ``reset()``, while the vector env's
  NEXT_STEP continuation step advances the game with the agent's action.
- ``CarRacing-v3``: its native 96x96 RGB observation, resized. ``carracing_discrete=True``
  selects gymnasium's ``continuous=False`` actions: 0 noop, 1 steer left, 2 steer right,
  3 gas, 4 brake.
- VizDoom (``Vizdoom*-v1``, the ``vizdoom`` package): the ``screen`` frame cropped and resized as World
  Models does, TakeCover with the paper's 2,100-step limit (:mod:`worldmodels.envs.vizdoom`).
- Any other env whose observation already is an image (a Box of ``(H, W, 3)`` uint8): resized, ``render()``
  never called. Any other env that renders ``rgb_array`` (``CartPole-v1``, ``LunarLander-v3``, ...):
  the observation is replaced by the resized ``render()`` frame.
- ``package.module:EnvId`` (any of the above) imports ``package.module`` first, which registers ``EnvId``,
  as ``gymnasium.make`` does (:func:`registered_id`).

``obs`` picks what an agent observes (:func:`observation_kind`)::

    obs="pixels"  (default)  the frames above
    obs="vector"             the env's own observation, a 1-D Box, as float32 (D,): never rendered
    obs="auto"               "vector" when the env's observation space is a 1-D Box (CartPole-v1, Pendulum-v1,
                             InvertedPendulum-v5), else "pixels" (ALE, CarRacing, VizDoom, image Boxes, render())
"""

from __future__ import annotations

import difflib
import functools
import importlib
from typing import Any

import ale_py
import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.wrappers import TransformObservation

from worldmodels.envs.options import ATARI_MAX_EPISODE_FRAMES, ATARI_PROTOCOLS, EnvError, EnvOptions, resolve_options
from worldmodels.envs.toy import register_toy_envs
from worldmodels.envs.vizdoom import ScreenFrames, is_vizdoom, register_vizdoom_envs, time_limit
from worldmodels.envs.wrappers import (
    AtariVectorFrames,
    EnvGuard,
    EpisodicLife,
    FrameSkip,
    NoopReset,
    PixelsFromRender,
    ResizeObservation,
    SeedOnFirstReset,
    env_raised,
    is_image_space,
)

gym.register_envs(ale_py)
register_toy_envs()  # worldmodels/Catch-v0, served through the render path like CartPole

ATARI_FRAMESKIP = 4
ATARI_ENTRY_POINT = "ale_py.env:AtariEnv"
OBS_MODES = ("auto", "pixels", "vector")


def registered_id(env_id: str) -> str:
    """``package.module:EnvId`` -> ``EnvId`` after importing the module (which registers it), as ``gymnasium.make`` does.

    Commands keep the full string (stores and run configs record it), so a later process imports the module again.
    """
    if not isinstance(env_id, str) or ":" not in env_id:
        return env_id
    module, _, name = env_id.partition(":")
    try:
        importlib.import_module(module)
    except Exception as error:  # noqa: BLE001 - a user's module may fail in any way; one readable line
        # The `wm` console script does not put the working directory on sys.path, as `python -m` would.
        hint = " (pip install it, or PYTHONPATH=. from its parent directory)" if isinstance(error, ModuleNotFoundError) else ""
        raise EnvError(f"--env {env_id!r}: cannot import module {module!r} ({type(error).__name__}: {error}); "
                       f"the part before ':' must be an importable module that registers {name!r}{hint}") from None
    return name


def registry_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registry entry for ``env_id``, or a one-line error naming the closest registered ids."""
    env_id = registered_id(env_id)
    if is_vizdoom(env_id) and env_id not in gym.registry and not register_vizdoom_envs():
        raise EnvError(f"{env_id!r} needs the vizdoom package: pip install vizdoom")
    if not isinstance(env_id, str) or env_id not in gym.registry:
        by_lower = {name.lower(): name for name in gym.registry}
        matches = difflib.get_close_matches(str(env_id).lower(), list(by_lower), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(repr(by_lower[m]) for m in matches)}?" if matches else "see gymnasium.registry for ids"
        raise EnvError(f"unknown env id {env_id!r}; {hint}")
    return gym.spec(env_id)


def is_atari(env_id: str) -> bool:
    return registry_spec(env_id).entry_point == ATARI_ENTRY_POINT


def protocol_options(env_id: str, protocol: str) -> dict[str, Any]:
    """The :data:`ATARI_PROTOCOLS` overrides of ``protocol`` for an ALE ``env_id``; ``{}`` for any other id (or
    one not registered yet, which cannot be ALE: ale-py registers its ids on import)."""
    if protocol not in ATARI_PROTOCOLS:
        raise EnvError(f"unknown Atari protocol {protocol!r}; choose one of {', '.join(ATARI_PROTOCOLS)}")
    try:
        return dict(ATARI_PROTOCOLS[protocol]) if is_atari(env_id) else {}
    except EnvError:
        return {}


def agent_frameskip(env_id: str, options: EnvOptions) -> int:
    """Env steps (emulator frames for ALE) per agent step."""
    if options.frameskip is not None:
        return options.frameskip
    return ATARI_FRAMESKIP if is_atari(env_id) else 1


def _atari_max_frames(options: EnvOptions, frameskip: int) -> int:
    if options.max_episode_steps is None:
        return ATARI_MAX_EPISODE_FRAMES
    return options.max_episode_steps * frameskip


def _gym_make(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` whose failure (missing dependency, bad kwargs) is one line."""
    try:
        return gym.make(env_id, **kwargs)
    except EnvError:
        raise
    except Exception as error:  # noqa: BLE001 - any constructor failure becomes one readable line
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise EnvError(f"could not construct {env_id!r}: {type(error).__name__}: {first_line}") from None


def _make_atari(env_id: str, options: EnvOptions) -> gym.Env:
    frameskip = agent_frameskip(env_id, options)
    env = _gym_make(
        env_id,
        # With maxpool the emulator steps one frame at a time so FrameSkip can see the last two frames.
        frameskip=1 if options.maxpool else frameskip,
        repeat_action_probability=float(options.sticky_action_prob),
        full_action_space=options.full_action_space,
        max_num_frames_per_episode=_atari_max_frames(options, frameskip),
        obs_type="rgb",
    )
    if options.maxpool and frameskip > 1:
        env = FrameSkip(env, frameskip, maxpool=True)
    if options.noop_max > 0:
        env = NoopReset(env, options.noop_max)
    if options.episodic_life:
        env = EpisodicLife(env)
    return ResizeObservation(env, options.image_size)


def _make_other(env_id: str, options: EnvOptions, seed: int | None) -> gym.Env:
    frameskip = agent_frameskip(env_id, options)
    kwargs: dict[str, Any] = {}
    if options.max_episode_steps is not None:
        kwargs["max_episode_steps"] = options.max_episode_steps * frameskip
    if env_id.startswith("CarRacing"):
        env = _gym_make(env_id, continuous=not options.carracing_discrete, **kwargs)
        env = ResizeObservation(env, options.image_size)  # native (96, 96, 3) -> (S, S, 3)
    elif is_vizdoom(env_id):
        limit = time_limit(env_id, options.max_episode_steps)
        env = ScreenFrames(_gym_make(env_id, **({"max_episode_steps": limit * frameskip} if limit else {})),
                           options.image_size)
    else:
        modes = creator_metadata(env_id).get("render_modes")
        renders = modes is None or "rgb_array" in modes  # unknown (a factory function): try rgb_array, as before
        env = _gym_make(env_id, **({"render_mode": "rgb_array"} if renders else {}), **kwargs)
        if is_image_space(env.observation_space):  # already (H, W, 3) uint8 frames: no render() needed
            env = ResizeObservation(env, options.image_size)
        elif not renders or env.render_mode != "rgb_array" or "rgb_array" not in env.unwrapped.metadata.get("render_modes", []):
            env.close()
            raise EnvError(
                f"{env_id} cannot render rgb_array frames (render modes: {env.unwrapped.metadata.get('render_modes', [])}) "
                f"and its observation space {env.observation_space} is not (H, W, 3) uint8 images; "
                "use an env whose render_mode 'rgb_array' returns (H, W, 3) images, e.g. CartPole-v1, CarRacing-v3 or ALE/Pong-v5"
            )
        else:
            env = PixelsFromRender(env, options.image_size, env_id)
            try:  # probe once so an env that renders nothing fails here, not mid-collection
                env.reset(seed=seed)
            except EnvError:
                raise
            except Exception as error:  # noqa: BLE001 - a user's env may fail in any way: one line naming it
                raise env_raised(env_id, "reset()", error) from error
    if frameskip > 1:
        env = FrameSkip(env, frameskip)
    return env


def is_vector_space(space: gym.Space) -> bool:
    """A 1-D Box: an observation an MLP encoder reads as it is."""
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 1


def observation_kind(env_id: str, obs: str = "auto") -> str:
    """``"pixels"`` or ``"vector"``: what ``make(env_id, obs=obs)`` observes (the rule in the module docstring).

    ``auto`` constructs the env once to read its observation space, except for the pixel families (ALE,
    CarRacing, VizDoom), which never observe vectors.
    """
    if obs not in OBS_MODES:
        raise EnvError(f"obs must be one of {list(OBS_MODES)}, got {obs!r}")
    if obs != "auto":
        return obs
    env_id = registered_id(env_id)
    if registry_spec(env_id).entry_point == ATARI_ENTRY_POINT or env_id.startswith("CarRacing") or is_vizdoom(env_id):
        return "pixels"
    probe = _gym_make(env_id)
    try:
        return "vector" if is_vector_space(probe.observation_space) else "pixels"
    finally:
        probe.close()


def _make_vector_obs(env_id: str, options: EnvOptions) -> gym.Env:
    """The env's own 1-D Box observation as float32 ``(D,)`` (DreamerV3's vector inputs); ``render()`` is never called."""
    frameskip = agent_frameskip(env_id, options)
    limit = {} if options.max_episode_steps is None else {"max_episode_steps": options.max_episode_steps * frameskip}
    env = _gym_make(env_id, **limit)
    space = env.observation_space
    if not is_vector_space(space):
        env.close()
        raise EnvError(f"{env_id} observes {space}, not vectors (a 1-D Box); use obs 'pixels' (or 'auto') for frames")
    if space.dtype != np.float32:  # MuJoCo envs observe float64; the store and the models hold float32
        with np.errstate(over="ignore"):  # float64 bounds past float32's range become +-inf, as they mean
            bounds = space.low.astype(np.float32), space.high.astype(np.float32)
        env = TransformObservation(env, lambda observation: np.asarray(observation, np.float32),
                                   gym.spaces.Box(*bounds, dtype=np.float32))
    return FrameSkip(env, frameskip) if frameskip > 1 else env


def creator_metadata(env_id: str) -> dict:
    """The env class's ``metadata`` (render modes) read from its registry entry, without constructing it."""
    entry_point = registry_spec(env_id).entry_point
    creator = entry_point if callable(entry_point) else gym.envs.registration.load_env_creator(entry_point)
    return dict(getattr(creator, "metadata", None) or {})


def make(env_id: str, *, image_size: int = 64, seed: int | None = None, obs: str = "pixels", **options: Any) -> gym.Env:
    """One gymnasium env with uint8 ``(image_size, image_size, 3)`` observations, or float32 ``(D,)`` vectors.

    ``obs``: ``pixels``, ``vector`` or ``auto`` (:func:`observation_kind`; ``image_size`` is unused for vectors).
    ``options`` are :class:`EnvOptions` fields (``frameskip``, ``sticky_action_prob``, ...).
    ``seed`` seeds the first ``reset()`` that passes no seed, and the action space, so the same
    seed and action sequence give the same frames. Errors are one-line :class:`EnvError`.
    """
    resolved = resolve_options(image_size, options)
    shown_id, env_id = env_id, registered_id(env_id)
    spec = registry_spec(env_id)
    if observation_kind(env_id, obs) == "vector":
        env = _make_vector_obs(env_id, resolved)
    elif spec.entry_point == ATARI_ENTRY_POINT:
        env = _make_atari(env_id, resolved)
    else:
        env = _make_other(env_id, resolved, seed)
    return EnvGuard(SeedOnFirstReset(env, seed), shown_id)  # an env's exception or NaN: one line naming it


def make_vector(env_id: str, num_envs: int, *, image_size: int = 64, seed: int | None = None, obs: str = "pixels",
                **options: Any) -> VectorEnv:
    """``num_envs`` envs stepped together; observations ``(num_envs, image_size, image_size, 3)`` uint8, or
    ``(num_envs, D)`` float32 with ``obs`` ``vector`` (or ``auto`` on a vector env: :func:`observation_kind`).

    Autoreset is gymnasium's ``NEXT_STEP`` mode: when sub-env ``i`` returns ``terminated`` or
    ``truncated`` on step ``t``, the NEXT ``step()`` ignores ``actions[i]`` and returns the reset
    observation of a new episode for ``i``, with reward 0 and both flags False::

        step t:    obs = last frame of episode,  terminated/truncated = True
        step t+1:  obs = first frame of the next episode, reward 0, action ignored

    Sub-env ``i`` is seeded with ``seed + i`` at the first ``reset()`` that passes no seed.
    ALE ids use ale-py's multithreaded C++ ``AtariVectorEnv``; other ids a gymnasium
    ``SyncVectorEnv`` (or ``AsyncVectorEnv`` with ``vector_backend="async"``) of :func:`make` envs.
    """
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise EnvError(f"num_envs must be a positive int, got {num_envs!r}")
    resolved = resolve_options(image_size, options)
    spec = registry_spec(env_id)
    kind = observation_kind(env_id, obs)  # resolved once here, not once per sub-env
    if spec.entry_point == ATARI_ENTRY_POINT and kind == "pixels":
        from ale_py.vector_env import AtariVectorEnv  # imported lazily: only ALE vectors need it

        frameskip = agent_frameskip(env_id, resolved)
        vector = AtariVectorEnv(
            spec.kwargs["game"],
            num_envs,
            img_height=resolved.image_size,
            img_width=resolved.image_size,
            grayscale=False,
            stack_num=1,
            frameskip=frameskip,
            maxpool=resolved.maxpool,
            repeat_action_probability=float(resolved.sticky_action_prob),
            full_action_space=resolved.full_action_space,
            max_num_frames_per_episode=_atari_max_frames(resolved, frameskip),
            noop_max=resolved.noop_max,
            # ale-py's own episodic_life restarts the whole game on a life loss; life_loss_info
            # signals terminated and lets the game continue, as our single-env EpisodicLife does.
            episodic_life=False,
            life_loss_info=resolved.episodic_life,
            reward_clipping=False,
            use_fire_reset=False,
            autoreset_mode=AutoresetMode.NEXT_STEP,
        )
        return AtariVectorFrames(vector, seed)
    thunks = [
        functools.partial(make, env_id, seed=None if seed is None else seed + i, obs=kind,
                          **{**options, "image_size": image_size})
        for i in range(num_envs)
    ]
    if resolved.vector_backend == "async":
        return gym.vector.AsyncVectorEnv(thunks, autoreset_mode=AutoresetMode.NEXT_STEP)
    return gym.vector.SyncVectorEnv(thunks, autoreset_mode=AutoresetMode.NEXT_STEP)
