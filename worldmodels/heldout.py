"""Held-out open-loop KPIs of a loaded model on fresh real episodes: what ``wm dream`` scores and ``wm export`` /
``wm remeasure`` write into a model's card (docs/open-loop.md).

Episodes are store-encoded ``(L, ...)`` arrays (:func:`worldmodels.driver.record_episode`); a batch of one episode is
``(1, T, ...)``, rows as in DESIGN.md: row t holds obs[t], the action taken at it and the reward received on arriving
at it. By :attr:`HeldoutProtocol.protocol`:

- ``fair`` (:mod:`worldmodels.open_loop`): windows at seeded random starts over whole episodes of a random policy
  and, where the model has one, of its own policy on the same seeds, ``samples`` futures per window;
- ``first-rows`` (the old protocol): the first ``context + horizon`` rows of each random episode, one forecast;
- ``both``: the two sets of keys.

This module never loads a model: the commands load (``worldmodels.load``) and pass the result in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from gymnasium.vector import VectorEnv

from worldmodels import open_loop as fair
from worldmodels.dreams import DreamModel, open_loop
from worldmodels.driver import record_episode
from worldmodels.envs import ActionSpec
from worldmodels.kpis import open_loop_kpis
from worldmodels.policies import RandomPolicy
from worldmodels.pretrained import make_env_for

if TYPE_CHECKING:  # the type only
    from worldmodels.registry import Pretrained

AGENT_ENVS = 8  # sub-envs the model's own policy plays its held-out episodes in (batched acting)
EPISODE_ROWS = 5000  # rows kept of each whole episode for the fair KPIs (a longer one is cut there)


@dataclass(frozen=True)
class HeldoutProtocol:
    """What the held-out KPIs score; ``wm dream``'s flags of the same names (``scripts/dream.py``) fill it."""

    protocol: str = "fair"
    context: int = 5
    horizon: int = 15
    episodes: int = 2
    seed: int = 0
    samples: int = fair.SAMPLES
    windows: int = fair.WINDOWS
    episode_rows: int = EPISODE_ROWS
    moving_threshold: int = fair.MOVING_THRESHOLD
    reward_threshold: float = fair.REWARD_THRESHOLD

    def rows(self, start: int = 0) -> int:
        """Rows each random episode needs: the clips' ``start + context + horizon``; whole episodes for ``fair``."""
        needed = start + self.context + self.horizon
        return needed if self.protocol == "first-rows" else max(self.episode_rows, needed)


def episode_batch(episode: dict[str, np.ndarray], spec: ActionSpec, start: int = 0,
                  length: int | None = None) -> dict[str, torch.Tensor]:
    """Rows ``start .. start + length - 1`` (to the end when ``length`` is ``None``) of a store-encoded episode as a
    ``(1, T, ...)`` batch, ``is_first`` on its first row (the model starts a fresh belief there)."""
    rows = slice(start, None if length is None else start + length)
    T = len(episode["obs"][rows])
    is_first = torch.zeros(1, T, dtype=torch.bool)
    is_first[0, 0] = True
    return {"obs": torch.as_tensor(episode["obs"][rows])[None],  # (1, T, H, W, C) uint8
            "action": spec.to_model(episode["action"][rows])[None],  # (1, T, A)
            "reward": torch.as_tensor(episode["reward"][rows])[None],
            "terminated": torch.as_tensor(episode["terminated"][rows])[None], "is_first": is_first}


def collect_episode(env: VectorEnv, *, length: int, seed: int) -> dict[str, torch.Tensor]:
    """Sub-env 0's episode of at most ``length`` rows after ``reset(seed)`` under a seeded random policy, as a
    ``(1, L, ...)`` batch (:func:`episode_batch`)."""
    spec = ActionSpec.from_space(env.single_action_space)
    return episode_batch(record_episode(env, RandomPolicy(spec, seed=seed), max_rows=length, seed=seed), spec)


def random_episodes(env: VectorEnv, *, count: int, rows: int, seed: int) -> list[dict]:
    """``count`` episodes of at most ``rows`` rows of a uniform random policy, episode ``i`` reset and its policy
    seeded with ``seed + i`` (as :func:`collect_episode`: the first rows are the old protocol's episodes)."""
    spec = ActionSpec.from_space(env.single_action_space)
    return [record_episode(env, RandomPolicy(spec, seed=seed + i), max_rows=rows, seed=seed + i) for i in range(count)]


def _pad(x: torch.Tensor, length: int, fill: float | bool) -> torch.Tensor:
    """``(1, L, ...)`` -> ``(1, length, ...)``: rows past the episode's end filled with ``fill``."""
    x = x.cpu()
    return torch.cat([x, x.new_full((1, length - x.shape[1], *x.shape[2:]), fill)], 1)


def pooled_kpis(batches: list[dict[str, torch.Tensor]], outs: list[dict[str, torch.Tensor]], context: int) -> dict[str, float]:
    """:func:`~worldmodels.kpis.open_loop_kpis` of every episode at once: ``(1, T_i, ...)`` batches and their
    open-loop outputs ``(1, T_i - context, ...)`` padded to one ``(N, max T_i, ...)`` batch.

    Padded rows are flagged ``is_first`` (a new episode), which ``open_loop_kpis`` masks, so a shorter episode
    counts at the horizons it reaches only, as when each episode was scored alone.
    """
    T = max(b["obs"].shape[1] for b in batches)
    batch = {"obs": torch.cat([_pad(b["obs"], T, 0) for b in batches]),  # (N, T, H, W, C)
             "is_first": torch.cat([_pad(b["is_first"], T, True) for b in batches]),  # (N, T)
             **{key: torch.cat([_pad(b[key], T, 0) for b in batches]) for key in ("reward", "terminated")}}
    out = {key: torch.cat([_pad(o[key], T - context, 0) for o in outs]) for key in ("frames", "reward", "end")}
    return open_loop_kpis(batch, out, context)


def heldout_scores(model: DreamModel, pretrained: Pretrained, env_id: str, randoms: list[dict],
                   protocol: HeldoutProtocol, device: torch.device) -> dict[str, float]:
    """The KPIs of ``protocol.protocol``: the old ones on the first rows of ``randoms``, the fair ones on them and
    on as many episodes of the model's own policy (none for a model without one)."""
    p = protocol
    K, H = p.context, p.horizon
    spec = pretrained.action_spec  # the env's, checked by make_env_for
    kpis: dict[str, float] = {}
    if p.protocol in ("first-rows", "both"):
        batches = [episode_batch(episode, spec, 0, K + H) for episode in randoms]
        with torch.no_grad():
            outs = [open_loop(model, b["obs"], b["action"], b["is_first"], context=K) for b in batches]
        kpis.update(pooled_kpis(batches, outs, K))
    if p.protocol in ("fair", "both"):
        sources = {"random": randoms}
        agent = pretrained.policy(seed=p.seed)
        if not isinstance(agent, RandomPolicy):  # the model's own policy, on the same seeds, a batch of envs at once
            envs = make_env_for(pretrained, env_id, min(p.episodes, AGENT_ENVS), seed=p.seed)
            try:
                sources["agent"] = fair.policy_episodes(envs, agent, count=p.episodes, rows=p.episode_rows,
                                                        seed=p.seed, device=device)
            finally:
                envs.close()
        kpis.update(fair.fair_kpis(model, sources, context=K, horizon=H, windows=p.windows, samples=p.samples,
                                   seed=p.seed, encode=spec.to_model, moving_threshold=p.moving_threshold,
                                   reward_threshold=p.reward_threshold))
    return kpis


def heldout_kpis(pretrained: Pretrained, model: DreamModel, env_id: str, protocol: HeldoutProtocol,
                 device: torch.device) -> dict[str, float]:
    """Collect ``protocol.episodes`` fresh random episodes of ``env_id`` (seeds ``seed, seed + 1, ...``) and score
    them (:func:`heldout_scores`): ``wm dream``'s KPIs without its clips."""
    env = make_env_for(pretrained, env_id, 1, seed=protocol.seed)
    try:
        randoms = random_episodes(env, count=protocol.episodes, rows=protocol.rows(), seed=protocol.seed)
        return heldout_scores(model, pretrained, env_id, randoms, protocol, device)
    finally:
        env.close()
