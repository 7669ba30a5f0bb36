"""Evaluate a trained World Models controller (V + M + C) in the real env, next to a random policy on the same seeds.

Reads ``RUN_DIR/{vae,mdnrnn,controller}/`` (safetensors + config.json, written by
``wm worldmodels``), plays ``--episodes`` episodes with V encoding each real frame and M's
hidden state updated with ``(z, a)`` every step, then the same episode seeds with uniform
random actions. Writes ``RUN_DIR/eval.json`` and returns the same dict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from worldmodels.profiling import resolve_device
from worldmodels.checkpoint import load_into, read_config, read_tensors, save_pretrained
from worldmodels.config import arg, save_json_atomic
from worldmodels.controllers.linear import make_controller
from worldmodels.controllers.real_env import random_policy_factory, run_episodes, world_model_policy_factory
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.mdnrnn import MDNRNN
from worldmodels.models.vae import ConvVAE


@dataclass
class EvaluateConfig:
    run_dir: str = arg("runs/worldmodels", "a `wm worldmodels` run directory holding vae/, mdnrnn/, controller/")
    env: str = arg("", "env id; empty = the env the run's episode store was collected from")
    episodes: int = arg(20, "evaluation episodes (the paper reports 100)")
    seed: int = arg(10_000, "episode j resets with seed + j; the random baseline uses the same seeds")
    num_envs: int = arg(8, "parallel envs stepped as one vector env")
    max_episode_steps: Optional[int] = arg(None, "env option: truncate episodes after this many agent steps (None = env default)")
    frameskip: Optional[int] = arg(None, "env option: agent step = this many env steps (None = env default)")
    device: str = arg("auto", "torch device for V, M and C: auto, cpu or cuda")


CONFIG = EvaluateConfig


def env_options(max_episode_steps: int | None, frameskip: int | None) -> dict[str, Any]:
    """Only the env options that were set, so the env's own defaults apply otherwise."""
    options = {"max_episode_steps": max_episode_steps, "frameskip": frameskip}
    return {key: value for key, value in options.items() if value is not None}


class _ParamsHolder(nn.Module):
    """Lets a controller's flat parameter vector travel through ``save_pretrained`` (safetensors)."""

    def __init__(self, params: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("params", params.detach().float().reshape(-1))


def save_component(directory: str | Path, name: str, module: nn.Module, kwargs: dict[str, Any]) -> None:
    save_pretrained(directory, {name: module}, {"family": "worldmodels", "kind": name, "kwargs": kwargs})


def load_vae(directory: str | Path, device: torch.device) -> ConvVAE:
    vae = ConvVAE(**read_config(directory)["kwargs"])
    load_into(vae, read_tensors(directory)["vae"], component="vae")
    return vae.to(device).eval()


def load_mdnrnn(directory: str | Path, device: torch.device) -> MDNRNN:
    mdnrnn = MDNRNN(**read_config(directory)["kwargs"])
    load_into(mdnrnn, read_tensors(directory)["mdnrnn"], component="mdnrnn")
    return mdnrnn.to(device).eval()


def save_controller(directory: str | Path, params: np.ndarray, *, kind: str, input_dim: int, action_spec: ActionSpec,
                    hidden_size: int, extra: dict[str, Any] | None = None) -> None:
    kwargs = {"kind": kind, "input_dim": input_dim, "action_spec": action_spec.to_dict(), "hidden_size": hidden_size}
    save_pretrained(directory, {"controller": _ParamsHolder(torch.as_tensor(params))},
                    {"family": "worldmodels", "kind": "controller", "kwargs": kwargs, **(extra or {})})


def load_controller(directory: str | Path, device: torch.device):
    """``(controller, params (1, N))`` from a controller directory."""
    kwargs = read_config(directory)["kwargs"]
    controller = make_controller(kwargs["kind"], kwargs["input_dim"], ActionSpec.from_dict(kwargs["action_spec"]),
                                 hidden_size=kwargs["hidden_size"])
    params = read_tensors(directory)["controller"]["params"].to(device).unsqueeze(0)  # (1, N)
    if params.shape[1] != controller.num_params:
        raise ValueError(f"{directory}: {params.shape[1]} controller parameters, config implies {controller.num_params}")
    return controller.to(device), params


def run(config: EvaluateConfig) -> dict:
    from worldmodels.envs import make_vector
    from worldmodels.envs.toy import register_toy_envs

    register_toy_envs()
    run_dir = Path(config.run_dir)
    missing = [part for part in ("vae", "mdnrnn", "controller") if not (run_dir / part / "model.safetensors").is_file()]
    if missing:
        raise FileNotFoundError(f"--run-dir {config.run_dir!r} is not a finished `wm worldmodels` run (no trained "
                                f"{', '.join(missing)}); run `wm worldmodels --run-dir {config.run_dir}` first")
    device = resolve_device(config.device)
    if not config.env and not (run_dir / "episodes" / "store.json").is_file():
        raise FileNotFoundError(f"--run-dir {config.run_dir!r} has no episodes/store.json naming its env; pass --env ID")
    env_id = config.env or json.loads((run_dir / "episodes" / "store.json").read_text())["env_id"]
    vae = load_vae(run_dir / "vae", device)
    mdnrnn = load_mdnrnn(run_dir / "mdnrnn", device)
    controller, params = load_controller(run_dir / "controller", device)
    vec_env = make_vector(env_id, min(config.num_envs, config.episodes), image_size=vae.image_size,
                          seed=config.seed, **env_options(config.max_episode_steps, config.frameskip))
    try:
        # One parameter vector for every episode: with repeats = episodes, every job maps to candidate 0.
        agent_policy = world_model_policy_factory(vae, mdnrnn, controller, params, repeats=config.episodes)
        agent = run_episodes(vec_env, agent_policy, episodes=config.episodes, seed=config.seed)
        random = run_episodes(vec_env, random_policy_factory(vec_env, config.seed), episodes=config.episodes, seed=config.seed)
    finally:
        vec_env.close()
    result = {"env": env_id, "episodes": config.episodes, "seed": config.seed,
              "return_mean": float(agent.mean()), "return_std": float(agent.std()),
              "random_mean": float(random.mean()), "random_std": float(random.std()),
              "returns": agent.tolist(), "random_returns": random.tolist()}
    save_json_atomic(run_dir / "eval.json", result)
    print(f"wm evaluate: {env_id} controller return {result['return_mean']:.3f} ± {result['return_std']:.3f} vs random "
          f"{result['random_mean']:.3f} ± {result['random_std']:.3f} over {config.episodes} episodes (same seeds)")
    return result
