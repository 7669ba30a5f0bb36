"""Model-based policy optimisation (Janner et al. 2019, "When to Trust Your Model", Alg. 2) over a PETS ensemble.

::

    warm-up      `warmup_steps` uniform random real steps                       -> D_env
    every env step (SAC acts in the real env, its transition -> D_env):
      every `model_every` steps   fit the ensemble on D_env (the injected `fit_model`)
      every `rollout_every` steps branch `rollouts` starts s ~ D_env, roll k = rollout_length(step) model steps
                                  with the current actor (ONE imagine call)               -> D_model
      `updates_per_step` x        SAC update on real_ratio x D_env + (1 - real_ratio) x D_model

The rollout length follows Janner et al.'s linear schedule ``[a, b, k_min, k_max]``: ``k = k_min`` before env
step ``a``, ``k_max`` after ``b``, linear between. Short branches keep the compounding model error small while
still covering states the policy visits (their Sec. 4.2). A branched transition counts only while every earlier
imagined state was not terminal (PETS makes terminal states absorbing)::

    imagine:  s_0 (real) -a_0-> s_1 -a_1-> ... s_k      reward r_1..r_k, cont c_1..c_k
    stored:   (s_t, a_t, r_{t+1}, s_{t+1}, done = 1 - c_{t+1})  for t with c_1 ... c_t = 1

The ensemble fit is passed in (``fit_model(real transitions) -> stats``) so the library stays free of the
trainers that own optimisers for it; :mod:`scripts.mbpo` wires :class:`trainers.runs.pets.EnsembleTrainer`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from worldmodels.core import WorldModel
from worldmodels.driver import Driver
from worldmodels.mbpo.sac import SAC, SACPolicy
from worldmodels.policies import RandomPolicy

TRANSITION_KEYS = ("obs", "action", "reward", "next_obs", "done")


class TransitionReplay:
    """A ring buffer of transitions as ``(capacity, ...)`` float tensors; :meth:`sample` draws uniformly."""

    def __init__(self, capacity: int, obs_dim: int, action_dim: int, device: torch.device | str = "cpu") -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        widths = {"obs": obs_dim, "action": action_dim, "reward": 0, "next_obs": obs_dim, "done": 0}
        self.data = {k: torch.zeros(capacity, *((w,) if w else ()), device=device) for k, w in widths.items()}
        self.capacity, self.count = capacity, 0

    def __len__(self) -> int:
        return min(self.count, self.capacity)

    def add(self, batch: dict[str, torch.Tensor]) -> None:
        """Append ``(N, ...)`` transitions (the oldest are overwritten once full)."""
        n = batch["obs"].shape[0]
        index = torch.arange(self.count, self.count + n, device=self.data["obs"].device) % self.capacity
        for key in TRANSITION_KEYS:
            self.data[key][index] = batch[key].to(self.data[key].device).float()
        self.count += n

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        index = torch.randint(len(self), (n,), generator=generator).to(self.data["obs"].device)
        return {key: value[index] for key, value in self.data.items()}

    def all(self) -> dict[str, torch.Tensor]:
        return {key: value[:len(self)] for key, value in self.data.items()}


class RealTransitions:
    """A driver hook: row ``t+1`` of an episode completes the transition begun at row ``t`` (DESIGN.md rows)."""

    def __init__(self, replay: TransitionReplay, action_spec) -> None:
        self.replay, self.action_spec = replay, action_spec
        self._previous: dict[int, dict[str, np.ndarray]] = {}
        self.returns: list[float] = []
        self._running: dict[int, float] = {}

    def on_row(self, env_index: int, row: dict[str, np.ndarray]) -> None:
        previous = self._previous.get(env_index)
        if previous is not None and not row["is_first"]:
            self.replay.add({"obs": torch.as_tensor(previous["obs"])[None],
                             "action": self.action_spec.to_model(np.asarray(previous["action"])[None]),
                             "reward": torch.as_tensor([float(row["reward"])]),
                             "next_obs": torch.as_tensor(row["obs"])[None],
                             "done": torch.as_tensor([float(row["terminated"])])})
            self._running[env_index] = self._running.get(env_index, 0.0) + float(row["reward"])
        if row["terminated"] or row["truncated"]:
            self.returns.append(self._running.pop(env_index, 0.0))
        self._previous[env_index] = {"obs": np.array(row["obs"]), "action": np.array(row["action"])}


@dataclass
class MBPOSettings:
    """The loop's knobs (Janner et al. 2019, appendix C, scaled down for small CPU runs)."""

    steps: int = 5000
    warmup_steps: int = 500
    model_every: int = 250
    rollout_every: int = 250
    rollouts: int = 10_000
    schedule: tuple[int, int, int, int] = (0, 5000, 1, 1)
    model_capacity_rollouts: int = 5
    real_ratio: float = 0.05
    updates_per_step: int = 10
    batch_size: int = 256
    seed: int = 0


def rollout_length(schedule: tuple[int, int, int, int], step: int) -> int:
    """Janner et al.'s ``[a, b, k_min, k_max]``: ``k_min`` until step ``a``, linear to ``k_max`` at step ``b``."""
    a, b, k_min, k_max = schedule
    fraction = 0.0 if step <= a else 1.0 if step >= b or b <= a else (step - a) / (b - a)
    return int(round(k_min + fraction * (k_max - k_min)))


@torch.no_grad()
def branched_rollouts(world_model: WorldModel, policy: SACPolicy, starts: torch.Tensor,
                      length: int) -> dict[str, torch.Tensor]:
    """``starts (N, D)`` real observations -> the valid model transitions of ``length``-step branches ``(M, ...)``."""
    N = starts.shape[0]
    start = world_model.observe(starts[:, None], None, torch.ones(N, 1, dtype=torch.bool))[1]
    trajectory = world_model.imagine(start, policy, length, keep_states=True)
    obs = world_model.feature(trajectory.states)  # (N, k+1, D)
    cont = trajectory.cont  # (N, k): c_1 .. c_k
    alive = torch.cat([torch.ones_like(cont[:, :1]), torch.cumprod(cont, 1)[:, :-1]], 1) > 0.5  # c_1 .. c_t = 1
    pick = lambda x: x[alive]  # noqa: E731  (N, k, ...) -> (M, ...)
    return {"obs": pick(obs[:, :-1]), "action": pick(trajectory.action), "reward": pick(trajectory.reward),
            "next_obs": pick(obs[:, 1:]), "done": pick(1.0 - cont)}


def mixed_batch(real: TransitionReplay, model: TransitionReplay, *, batch_size: int, real_ratio: float,
                generator: torch.Generator) -> dict[str, torch.Tensor]:
    """``round(real_ratio * B)`` real transitions + the rest synthetic (all real while the model buffer is empty)."""
    n_real = batch_size if len(model) == 0 else int(round(real_ratio * batch_size))
    parts = [real.sample(n_real, generator)] if n_real else []
    if batch_size - n_real:
        parts.append(model.sample(batch_size - n_real, generator))
    return {key: torch.cat([part[key] for part in parts]) for key in TRANSITION_KEYS}


class MBPOLoop:
    """The loop of the module docstring, one env step at a time (:meth:`step`), its state in attributes: the real and
    synthetic replays, the batch ``generator``, the driver and its counters, ``updates``, ``model_stats``,
    ``losses``. A trainer that checkpoints between episodes reads and restores them (``trainers.runs.mbpo``).

    ``episode_end(driver) -> bool``, called after each env step, may start the next episode itself (a seeded reset:
    ``trainers.runs.loop_resume.next_episode``) and says whether an episode ended; without it the vector env
    autoresets.
    """

    def __init__(self, env: Any, world_model: WorldModel,
                 fit_model: Callable[[dict[str, torch.Tensor]], dict[str, Any]], sac: SAC, settings: MBPOSettings, *,
                 update: Callable[[dict[str, torch.Tensor]], dict[str, float]],
                 log: Callable[[str, float, int], None] | None = None,
                 episode_end: Callable[[Driver], bool] | None = None) -> None:
        if not 0.0 <= settings.real_ratio <= 1.0:
            raise ValueError(f"real_ratio must be in [0, 1], got {settings.real_ratio}")
        self.world_model, self.fit_model, self.sac, self.settings = world_model, fit_model, sac, settings
        self.update_fn, self.log, self.episode_end = update, log, episode_end
        device = sac.log_alpha.device
        obs_dim, action_dim = world_model.feature_dim, sac.action_spec.dim
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.real = TransitionReplay(settings.steps, obs_dim, action_dim, device)
        per_batch = settings.rollouts * settings.schedule[3]
        self.synthetic = TransitionReplay(max(1, settings.model_capacity_rollouts * per_batch), obs_dim, action_dim,
                                          device)
        self.hook = RealTransitions(self.real, sac.action_spec)
        self.random_policy = RandomPolicy(sac.action_spec, seed=settings.seed)
        self.driver = Driver(env, self.random_policy, hooks=[self.hook], device=device)
        self.policy = SACPolicy(sac, sample=True)
        self.model_stats: dict[str, Any] = {}
        self.losses: dict[str, float] = {}
        self.updates = 0

    @property
    def finished(self) -> bool:
        return self.driver.steps >= self.settings.steps

    def step(self) -> bool:
        """One real env step and what follows it (fit, rollouts, SAC updates); returns whether an episode ended."""
        settings, driver, hook = self.settings, self.driver, self.hook
        if driver.steps == settings.warmup_steps:
            driver.policy = self.policy
        finished = len(hook.returns)
        driver.step()
        ended = self.episode_end(driver) if self.episode_end is not None else False
        step = driver.steps
        if self.log is not None and len(hook.returns) > finished:
            self.log("env/return", hook.returns[-1], step)
        if step < settings.warmup_steps or len(self.real) < 2:
            return ended
        if (step - settings.warmup_steps) % settings.model_every == 0:
            self.model_stats = self.fit_model(self.real.all())
        if (step - settings.warmup_steps) % settings.rollout_every == 0:
            starts = self.real.sample(settings.rollouts, self.generator)["obs"]
            self.synthetic.add(branched_rollouts(self.world_model, self.policy, starts,
                                                 rollout_length(settings.schedule, step)))
        for _ in range(settings.updates_per_step):
            self.losses = self.update_fn(mixed_batch(self.real, self.synthetic, batch_size=settings.batch_size,
                                                     real_ratio=settings.real_ratio, generator=self.generator))
            self.updates += 1
        if self.log is not None and step % 250 == 0:
            for name, value in self.losses.items():
                self.log(f"train/loss/{name}", value, self.updates)  # losses: x = SAC updates; returns: x = env steps
            self.log("mbpo/rollout_length", rollout_length(settings.schedule, step), step)
            self.log("mbpo/synthetic_transitions", len(self.synthetic), step)
        return ended

    def result(self, train_s: float) -> dict[str, Any]:
        return {"train_returns": self.hook.returns, "env_steps": self.driver.steps, "sac_updates": self.updates,
                "synthetic_transitions": len(self.synthetic), "model": self.model_stats, "final_losses": self.losses,
                "train_s": round(train_s, 1)}


def run_mbpo(env: Any, world_model: WorldModel, fit_model: Callable[[dict[str, torch.Tensor]], dict[str, Any]],
             sac: SAC, settings: MBPOSettings, *, update: Callable[[dict[str, torch.Tensor]], dict[str, float]],
             log: Callable[[str, float, int], None] | None = None) -> dict[str, Any]:
    """The loop of the module docstring on a 1-env vector ``env``; returns the training curve and counters.

    ``fit_model(real transitions)`` refits the ensemble and ``update(batch)`` takes one SAC step (both live in
    ``trainers``: the library holds no optimiser).
    """
    loop = MBPOLoop(env, world_model, fit_model, sac, settings, update=update, log=log)
    began = time.perf_counter()
    loop.driver.reset(seed=settings.seed)
    while not loop.finished:
        loop.step()
    return loop.result(time.perf_counter() - began)
