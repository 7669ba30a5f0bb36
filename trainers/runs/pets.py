"""PETS online (Chua et al. 2018, Algorithm 1): random warm-up, fit the ensemble every episode, act by MPC.

::

    warm-up:  warmup_episodes random episodes                      -> transitions (obs, a, next_obs, r)
    repeat until `steps` real transitions:
        fit the ensemble on ALL transitions (bootstrapped per member, elites by held-out MSE)
        play one episode with CEM over the ensemble (PlannerPolicy: first action of each plan)
    then the run skeleton (trainers.runs.skeleton): save RUN_DIR/model (safetensors + config.json, worldmodels.pets.family),
    evaluate it as loaded (CEM-MPC with the saved planner settings vs uniform random on seeds seed + 10000 + j)
    -> RUN_DIR/eval.json, results.json

No Lightning Trainer is used here: the ensemble is a few small MLPs refit for a few hundred steps after every
episode, where a Trainer's start-up would cost more than the fit; the optimiser step is written once, in
:class:`EnsembleTrainer`. Environments are plain gymnasium vector envs over the env's own VECTOR observation
(:func:`worldmodels.pets.envs.make_state_env`, re-exported here: the env factory with ``obs="vector"``).
TensorBoard (``RUN_DIR/tb``): the KPIs of :mod:`worldmodels.kpis` and ``kpi/return_vs_env_steps`` after every
episode, on the latest real episode; ``kpi/real_return`` and ``kpi/random_return`` at the end (the tags of every family).
Episode ``n`` resets seeded ``(seed, n)``, and between episodes the loop's whole state is checkpointed to
``RUN_DIR/resume``, from which a killed run resumes exactly (:mod:`trainers.runs.loop_resume`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from trainers.modules.learner import learner_step
from trainers.runs.loop_resume import (begin_episodes, is_due, load_checkpoint, load_module, load_optimizer, load_rng,
                                       module_tensors, next_episode, optimizer_state, rng_state, save_checkpoint,
                                       saved_generator)
from trainers.runs.skeleton import Trained
from worldmodels import profiling
from worldmodels.config import arg, threads_arg
from worldmodels.driver import Driver
from worldmodels.envs.cartpole_continuous import CONTINUOUS_CARTPOLE_ID
from worldmodels.envs.spaces import ActionSpec
from worldmodels.finite import all_finite
from worldmodels.kpis import log_planner_kpis, open_loop_errors
from worldmodels.pets import PROPAGATIONS, PETSWorldModel, ProbabilisticEnsemble, bootstrap_indices
from worldmodels.pets.envs import make_state_env
from worldmodels.pets.family import save_whole
from worldmodels.pets.tasks import KNOWN_TASKS
from worldmodels.planning.cem import CEM
from worldmodels.policies import PlannerPolicy, RandomPolicy
from worldmodels.kpis import log_return_vs_env_steps


@dataclass
class PETSRunConfig:
    env: str = arg(CONTINUOUS_CARTPOLE_ID, "gymnasium env id with a vector observation and a Box action space")
    steps: int = arg(2000, "real env transitions in total, random warm-up included", minimum=1, maximum=10**9)
    eval_episodes: int = arg(5, "evaluation episodes of CEM-MPC and of random play, on the same seeds", minimum=1,
                             maximum=10**6)
    run_dir: str = arg("runs/pets", "output directory: eval.json, results.json, model/ (safetensors + JSON)")
    seed: int = arg(0, "seed of the envs, the networks, the bootstraps and the planner", minimum=0, maximum=2**32 - 1)
    ensemble: int = arg(5, "ensemble members E (PETS: 5)", minimum=1, maximum=100)
    elites: Optional[int] = arg(None, "members kept for planning, lowest held-out MSE first (None = all)", minimum=1,
                                maximum=100, check=lambda c: None if c.elites <= c.ensemble else
                                f"must be <= --ensemble {c.ensemble}")
    propagation: str = arg("tsinf", "particle propagation (Chua et al. 2018, Sec. 5)", choices=PROPAGATIONS)
    horizon: int = arg(15, "planning horizon H (steps)", minimum=1, maximum=1000)
    candidates: int = arg(100, "CEM candidates per iteration", minimum=2, maximum=65536)
    iterations: int = arg(3, "CEM iterations per action", minimum=1, maximum=1000)
    particles: int = arg(4, "particles per candidate (rows of one imagine call; returns are averaged)", minimum=1,
                         maximum=1024)
    cem_elites: int = arg(10, "CEM elites refit to per iteration", minimum=1, maximum=65536,
                          check=lambda c: None if c.cem_elites <= c.candidates else
                          f"must be <= --candidates {c.candidates}")
    warmup_episodes: int = arg(1, "random episodes before the first fit", minimum=1, maximum=10**6)
    hidden: int = arg(64, "hidden width of every member (PETS: 200)", minimum=1, maximum=65536)
    layers: int = arg(3, "linear layers per member, the output layer included (PETS: 4)", minimum=1, maximum=64)
    epochs: int = arg(5, "passes over each member's bootstrap per fit (one fit after every episode)", minimum=1,
                      maximum=10_000)
    batch_size: int = arg(32, "transitions per member per gradient step", minimum=1, maximum=65536)
    # Adam moves every weight by about lr per step: past 1 it only diverges
    lr: float = arg(1e-3, "Adam learning rate", above=0, maximum=1.0)
    weight_decay: float = arg(5e-5, "Adam L2 weight decay (PETS regularises every layer)", minimum=0, maximum=1.0)
    holdout: float = arg(0.1, "share of transitions held out to rank the members (elites)", minimum=0, maximum=0.5)
    learned_reward: bool = arg(False, "learn the reward even where worldmodels.pets.tasks knows it")
    eval_envs: int = arg(5, "envs played at once during evaluation (one batched plan per step)", minimum=1,
                         maximum=1024)
    tensorboard: bool = arg(True, "log KPIs to RUN_DIR/tb: return vs env steps, plan ms per action, open-loop error "
                                   "and ensemble disagreement by horizon")
    checkpoint_every: int = arg(200, "env steps between checkpoints (RUN_DIR/resume, at the next episode end): a "
                                     "killed run resumes there", minimum=1, maximum=10**9)
    threads: str = threads_arg("1")
    device: str = arg("cpu", "torch device: auto, cpu or cuda")


LOSS_SCALES = {"nll": 1.0, "logvar_bound": 0.01}  # Chua et al. 2018 code: 0.01 * (sum max_logvar - sum min_logvar)


class TransitionBuffer:
    """A driver hook: every real transition ``(obs_t, a_t) -> (obs_{t+1}, r_{t+1})``, in arrival order.

    Row ``t`` holds ``obs[t]`` and the action taken at it; row ``t+1`` of the same episode (not ``is_first``)
    holds what it led to (terminal or not: termination is the task's known function, not learned). Episode
    returns, with the transition count at which each ended, are kept for the learning curve.
    """

    def __init__(self, action_spec: ActionSpec) -> None:
        self.action_spec = action_spec
        self.columns: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "action", "next_obs", "reward")}
        self.returns: list[float] = []
        self.return_steps: list[int] = []  # transitions collected when each episode ended
        self.last_episode: dict[str, np.ndarray] | None = None
        self._previous: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.columns["obs"])

    def on_row(self, env_index: int, row: dict[str, np.ndarray]) -> None:
        previous = self._previous.get(env_index)
        if previous is not None and not row["is_first"]:
            for key, value in (("obs", previous["obs"]), ("action", previous["action"]), ("next_obs", row["obs"]),
                               ("reward", row["reward"])):
                self.columns[key].append(np.array(value, np.float32))
        self._previous[env_index] = {"obs": np.array(row["obs"]), "action": np.array(row["action"])}

    def on_episode(self, env_index: int, episode: dict[str, np.ndarray], complete: bool) -> None:
        self.returns.append(float(episode["reward"].sum()))
        self.return_steps.append(len(self))
        self.last_episode = episode

    def tensors(self, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """``obs, next_obs (N, D)``, model ``action (N, A)``, ``reward (N,)``."""
        out = {k: torch.as_tensor(np.stack(v), device=device) for k, v in self.columns.items()}
        out["action"] = self.action_spec.to_model(out["action"]).to(device)
        return out


class EnsembleTrainer:
    """Fits a :class:`PETSWorldModel`'s ensemble: bootstrapped minibatches, the weighted loss parts, Adam."""

    def __init__(self, world_model: PETSWorldModel, *, lr: float, weight_decay: float, batch_size: int, epochs: int,
                 holdout: float, seed: int) -> None:
        self.world_model, self.batch_size, self.epochs, self.holdout = world_model, batch_size, epochs, holdout
        self.optimizer = torch.optim.Adam(world_model.ensemble.parameters(), lr=lr, weight_decay=weight_decay)
        self.generator = torch.Generator().manual_seed(seed)
        self.fits = 0

    def fit(self, data: dict[str, torch.Tensor]) -> dict[str, Any]:
        """One refit on all ``data`` (:meth:`TransitionBuffer.tensors`); returns the last losses and the val MSE."""
        wm, ensemble = self.world_model, self.world_model.ensemble
        inputs, targets = wm.transitions(wm.encode(data["obs"]), data["action"], wm.encode(data["next_obs"]),
                                         data["reward"])
        N, E = inputs.shape[0], ensemble.ensemble_size
        order = torch.randperm(N, generator=self.generator).to(inputs.device)
        held = int(self.holdout * N) if N >= 20 else 0  # too few to spare: rank members on the training data
        val, train = order[:held], order[held:]
        ensemble.set_normalizer(inputs[train], targets[train])
        boot = train[bootstrap_indices(len(train), E, generator=self.generator).to(inputs.device)]  # (E, Nt)
        parts: dict[str, torch.Tensor] = {}
        steps = 0
        for _ in range(self.epochs):
            shuffled = torch.gather(boot, 1, torch.argsort(torch.rand(boot.shape, generator=self.generator), 1)
                                    .to(boot.device))
            for begin in range(0, shuffled.shape[1], self.batch_size):
                index = shuffled[:, begin:begin + self.batch_size]  # (E, b)
                parts = ensemble.loss(inputs[index], targets[index])
                learner_step(self.optimizer, parts, scales=LOSS_SCALES, where=f"ensemble fit {self.fits} step {steps}",
                             hint=lambda: self._hint(inputs, targets))
                steps += 1
        self.fits += 1
        check = val if held else train
        val_mse = ensemble.mse(inputs[check], targets[check])  # (E,)
        elites = ensemble.set_elites(val_mse)
        return {**{f"loss/{k}": float(v.detach()) for k, v in parts.items()}, "val_mse": val_mse.tolist(),
                "elites": elites.tolist(), "transitions": N}


    @staticmethod
    def _hint(inputs: torch.Tensor, targets: torch.Tensor) -> str:
        """What to try when a step went non-finite (a diverged ensemble used to plan with NaN to the end)."""
        if all_finite([inputs, targets]):
            return "a lower --lr usually fixes this"
        return "the transitions it fits are not finite: the env's data went bad, not the learning rate"


def log_episode(writer: Any, buffer: "TransitionBuffer", world_model: PETSWorldModel, planner: CEM,
                horizon: int) -> dict[str, list[float]]:
    """TensorBoard KPIs (:mod:`worldmodels.kpis`) of the episode that just ended, at its env step; returns the
    open-loop error and disagreement by horizon of ``world_model`` on that episode."""
    step = buffer.return_steps[-1]
    open_loop = open_loop_errors(world_model, [buffer.last_episode], horizon)
    log_return_vs_env_steps(writer, step, buffer.returns[-1])
    ms = 1000 * planner.seconds / planner.actions if planner.actions else None
    log_planner_kpis(writer, step, open_loop=open_loop, ms_per_action=ms)
    return open_loop


def build_world_model(config: PETSRunConfig, obs_dim: int, action_spec: ActionSpec) -> PETSWorldModel:
    """The ensemble and world model for ``config``: the env's known reward / termination where there is one."""
    task = None if config.learned_reward else KNOWN_TASKS.get(config.env)
    out_dim = obs_dim if task is not None else obs_dim + 1
    torch.manual_seed(config.seed)  # the members' initial weights
    ensemble = ProbabilisticEnsemble(obs_dim + action_spec.dim, out_dim, ensemble_size=config.ensemble,
                                     hidden=config.hidden, layers=config.layers, elites=config.elites)
    world_model = PETSWorldModel(ensemble, action_spec, propagation=config.propagation,
                                 reward_fn=task.reward_fn if task else None,
                                 termination_fn=task.termination_fn if task else None)
    world_model.generator = torch.Generator().manual_seed(config.seed)
    return world_model


def planner_settings(config: PETSRunConfig) -> dict[str, int]:
    """The CEM settings of ``config``, as :data:`worldmodels.pets.family.PLANNER_KEYS` (saved with the model)."""
    return {"horizon": config.horizon, "candidates": config.candidates, "iterations": config.iterations,
            "particles": config.particles, "elites": config.cem_elites, "seed": config.seed}


def make_planner(config: PETSRunConfig, action_spec: ActionSpec) -> CEM:
    return CEM(action_spec, **planner_settings(config))


BUFFER_COLUMNS = ("obs", "action", "next_obs", "reward")


def save_pets(run_dir: str, loop: dict[str, Any], *, driver: Driver, world_model: PETSWorldModel,
              trainer: EnsembleTrainer, buffer: TransitionBuffer, random_policy: RandomPolicy, planner: CEM) -> None:
    """Everything :func:`train_pets` holds between two episodes -> ``RUN_DIR/resume`` (:mod:`trainers.runs.loop_resume`)."""
    tensors = module_tensors("ensemble", world_model.ensemble)
    moments, optimizer = optimizer_state("optimizer", trainer.optimizer)
    streams, rng = rng_state({"fit": trainer.generator, "particles": world_model.generator,
                              "random_policy": random_policy.generator, "planner": planner.generator})
    tensors.update({**moments, **streams})
    for key in BUFFER_COLUMNS:
        if buffer.columns[key]:
            tensors[f"buffer.{key}"] = torch.as_tensor(np.stack(buffer.columns[key]))
    for key, value in (buffer.last_episode or {}).items():
        tensors[f"last_episode.{key}"] = torch.as_tensor(np.ascontiguousarray(value))
    save_checkpoint(run_dir, tensors, {**loop, "episodes": driver.episodes, "env_steps": driver.steps, "rng": rng,
                                       "optimizer": optimizer, "returns": buffer.returns,
                                       "return_steps": buffer.return_steps,
                                       "planner": {"seconds": planner.seconds, "actions": planner.actions,
                                                   "calls": planner.calls}})


def restore_pets(saved: tuple[dict[str, torch.Tensor], dict[str, Any]], *, world_model: PETSWorldModel,
                 trainer: EnsembleTrainer, buffer: TransitionBuffer, random_policy: RandomPolicy,
                 planner: CEM) -> dict[str, Any]:
    """The inverse of :func:`save_pets`, into freshly built objects; returns the loop's counters."""
    tensors, state = saved
    load_module("ensemble", world_model.ensemble, tensors)
    load_optimizer("optimizer", trainer.optimizer, tensors, state["optimizer"])
    planner.generator = saved_generator(tensors, "planner")
    load_rng(tensors, state["rng"], {"fit": trainer.generator, "particles": world_model.generator,
                                     "random_policy": random_policy.generator})
    for key in BUFFER_COLUMNS:
        if f"buffer.{key}" in tensors:
            buffer.columns[key] = list(tensors[f"buffer.{key}"].numpy())
    episode = {k.split(".", 1)[1]: v.numpy() for k, v in tensors.items() if k.startswith("last_episode.")}
    buffer.last_episode = episode or None
    buffer.returns, buffer.return_steps = list(state["returns"]), list(state["return_steps"])
    planner.seconds, planner.actions, planner.calls = (state["planner"][k] for k in ("seconds", "actions", "calls"))
    trainer.fits = state["fits"]
    return {k: state[k] for k in ("fits", "last_fit", "kpis", "logged", "fit_due", "checkpointed", "finished",
                                  "episodes", "env_steps")}


def train_pets(config: PETSRunConfig, writer: Any = None) -> Trained:
    """The loop of the module docstring -> :class:`trainers.runs.skeleton.Trained` (the run skeleton saves the model, then
    evaluates it as loaded: CEM-MPC with the saved planner settings vs random on the same seeds).

    Episode ``n`` starts from a reset seeded ``(seed, n)``; between episodes, once ``--checkpoint-every`` env steps
    are due, everything the loop holds goes to ``RUN_DIR/resume`` (:mod:`trainers.runs.loop_resume`), and a
    killed run resumes there, ending bit-identical to one that was not killed."""
    if config.elites is not None and config.elites > config.ensemble:
        raise ValueError(f"--elites {config.elites} must be <= --ensemble {config.ensemble}")
    if config.cem_elites > config.candidates:
        raise ValueError(f"--cem-elites {config.cem_elites} must be <= --candidates {config.candidates}")
    profiling.set_threads(config.threads, rows=config.candidates * config.particles, width=config.hidden)
    device = profiling.resolve_device(config.device)
    env = make_state_env(config.env, 1)  # a wrong env is a one-line error before any training
    began = time.perf_counter()
    spec = ActionSpec.from_space(env.single_action_space)
    world_model = build_world_model(config, int(env.single_observation_space.shape[0]), spec).to(device)
    trainer = EnsembleTrainer(world_model, lr=config.lr, weight_decay=config.weight_decay,
                              batch_size=config.batch_size, epochs=config.epochs, holdout=config.holdout,
                              seed=config.seed)
    buffer = TransitionBuffer(spec)
    random_policy = RandomPolicy(spec, seed=config.seed)
    driver = Driver(env, random_policy, hooks=[buffer], device=device)
    planner = make_planner(config, spec)
    planning = PlannerPolicy(world_model, planner, device=device)
    loop = {"fits": 0, "last_fit": None, "kpis": {}, "logged": 0, "fit_due": False, "checkpointed": 0,
            "finished": False}
    saved = load_checkpoint(config.run_dir)
    if saved is not None:
        loop.update(restore_pets(saved, world_model=world_model, trainer=trainer, buffer=buffer,
                                 random_policy=random_policy, planner=planner))
    begin_episodes(driver, config.seed, episodes=loop.get("episodes", 0), steps=loop.get("env_steps", 0))
    if driver.episodes >= config.warmup_episodes:
        driver.policy = planning

    def checkpoint(finished: bool = False) -> None:
        loop.update(finished=finished, checkpointed=driver.steps)
        save_pets(config.run_dir, loop, driver=driver, world_model=world_model, trainer=trainer, buffer=buffer,
                  random_policy=random_policy, planner=planner)

    # Warm-up: random episodes; then, after every episode: fit on ALL transitions, play one episode by CEM-MPC.
    while not loop["finished"] and len(buffer) < config.steps:
        if loop["fit_due"]:
            loop["last_fit"], loop["fits"], loop["fit_due"] = trainer.fit(buffer.tensors(device)), trainer.fits, False
            if writer is not None and len(buffer.returns) > loop["logged"]:  # the fresh model on the latest episode
                loop["kpis"] = log_episode(writer, buffer, world_model, planner, config.horizon)
                loop["logged"] = len(buffer.returns)
        driver.step()
        if len(buffer) < config.steps and next_episode(driver, config.seed):  # at the budget: no row past it
            if driver.episodes >= config.warmup_episodes:
                driver.policy, loop["fit_due"] = planning, True
            if is_due(driver.steps, loop["checkpointed"], config.checkpoint_every):
                checkpoint()
    if not loop["finished"]:
        if writer is not None and len(buffer.returns) > loop["logged"]:  # the last episode, under its planner's model
            loop["kpis"] = log_episode(writer, buffer, world_model, planner, config.horizon)
        checkpoint(finished=True)  # a kill during the evaluation resumes here, with nothing left to train
    env.close()
    kpis, last_fit = loop["kpis"], loop["last_fit"]
    train_seconds = time.perf_counter() - began

    def save(directory: Path) -> None:
        save_whole(directory, world_model, env_id=config.env, known_task=not world_model.learned_reward,
                   planner=planner_settings(config), training_steps={"env_steps": len(buffer)})

    def eval_extra(model: Any, policy: Any, seed: int) -> dict[str, Any]:
        used = policy.planner
        return {"propagation": config.propagation, "planner": "cem",
                "plan_ms_per_action": 1000 * used.seconds / max(used.actions, 1)}

    results = {"env": config.env, "env_steps": len(buffer), "episode_returns": buffer.returns,
               "episode_end_steps": buffer.return_steps, "train_seconds": train_seconds,
               "last_fit": last_fit, "open_loop": kpis,
               "train_plan_ms_per_action": 1000 * planner.seconds / max(planner.actions, 1)}
    return Trained(save=save, env_steps=len(buffer), eval_envs=config.eval_envs, eval_extra=eval_extra,
                   results=results)


__all__ = ["LOSS_SCALES", "EnsembleTrainer", "PETSRunConfig", "TransitionBuffer", "build_world_model",
           "make_state_env", "planner_settings", "train_pets"]
