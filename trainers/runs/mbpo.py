"""`wm mbpo`: SAC on real + branched PETS-model transitions (:class:`worldmodels.mbpo.MBPOLoop`), then evaluation.

Wires the library loop to this layer's ensemble fit (:class:`trainers.runs.pets.EnsembleTrainer`, bootstrapped
members, elites by held-out MSE) and to the state-vector envs of :func:`trainers.runs.pets.make_state_env`.
The env's known reward and termination (:data:`worldmodels.pets.tasks.KNOWN_TASKS`) are used where they exist.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from trainers.modules.learner import learner_step
from trainers.runs.loop_resume import (begin_episodes, is_due, load_checkpoint, load_module, load_optimizer, load_rng,
                                       module_tensors, next_episode, optimizer_state, rng_state, save_checkpoint)
from trainers.runs.skeleton import Trained
from trainers.runs.pets import EnsembleTrainer, PETSRunConfig, build_world_model, make_state_env
from worldmodels import profiling
from worldmodels.config import arg, threads_arg
from worldmodels.envs.spaces import ActionSpec
from worldmodels.mbpo.family import save_whole
from worldmodels.mbpo import SAC, MBPOLoop, MBPOSettings
from worldmodels.mbpo.sac import sac_losses


@dataclass
class MBPORunConfig:
    env: str = arg("InvertedPendulum-v5", "gymnasium env id with vector observations and Box actions")
    steps: int = arg(5000, "real env steps in total, random warm-up included", minimum=2, maximum=10**9)
    eval_episodes: int = arg(10, "evaluation episodes (SAC's mean action and random, on the same seeds)", minimum=1,
                             maximum=10**6)
    run_dir: str = arg("runs/mbpo", "directory for eval.json, results.json and TensorBoard logs")
    seed: int = arg(0, "seed of the envs, networks, rollouts and batches", minimum=0, maximum=2**32 - 1)
    warmup_steps: int = arg(500, "uniform random real steps before SAC acts", minimum=1, maximum=10**9,
                            check=lambda c: None if c.warmup_steps < c.steps else
                            f"must be below --steps {c.steps}, or SAC never updates")
    model_every: int = arg(250, "env steps between ensemble fits (Janner et al.: 250)", minimum=1, maximum=10**9)
    rollout_every: int = arg(250, "env steps between batches of branched rollouts", minimum=1, maximum=10**9)
    rollouts: int = arg(10_000, "branched rollouts per batch, from real states drawn uniformly", minimum=1,
                        maximum=10**7)
    k_schedule: list[int] = arg([0, 5000, 1, 1], "rollout length schedule a,b,k_min,k_max (env steps, model steps)",
                                check=lambda c: _schedule_problem(c.k_schedule))
    model_retain: int = arg(5, "rollout batches the synthetic buffer holds", minimum=1, maximum=10_000)
    real_ratio: float = arg(0.05, "share of real transitions in every SAC batch (Janner et al.: 0.05)",
                            minimum=0.0, maximum=1.0)
    updates_per_step: int = arg(10, "SAC updates per env step after warm-up (Janner et al.: 20)", minimum=1,
                                maximum=1000)
    batch_size: int = arg(256, "SAC batch size", minimum=1, maximum=65536)
    hidden: int = arg(256, "SAC MLP width", minimum=8, maximum=65536)
    # Adam moves every weight by about lr per step: past 1 it only diverges
    lr: float = arg(3e-4, "SAC Adam learning rate", above=0.0, maximum=1.0)
    gamma: float = arg(0.99, "discount", above=0.0, maximum=1.0)
    ensemble: int = arg(5, "PETS ensemble members", minimum=1, maximum=100)
    elites: Optional[int] = arg(None, "members the rollouts use, lowest held-out MSE first (None = all)", minimum=1,
                                maximum=100, check=lambda c: _at_most(c.elites, c.ensemble, "--ensemble"))
    model_hidden: int = arg(200, "ensemble member width", minimum=8, maximum=65536)
    model_epochs: int = arg(5, "passes over each member's bootstrap per fit", minimum=1, maximum=10_000)
    checkpoint_every: int = arg(500, "env steps between checkpoints (RUN_DIR/resume, at the next episode end): a "
                                     "killed run resumes there", minimum=1, maximum=10**9)
    threads: str = threads_arg("1")
    device: str = arg("cpu", "torch device: auto, cpu or cuda")


def _at_most(value: int, bound: int, flag: str) -> str | None:
    return None if value <= bound else f"must be <= {flag} {bound}"


def _schedule_problem(schedule: list[int]) -> str | None:
    """Janner et al. 2019's linear schedule: k grows from k_min at env step a to k_max at step b."""
    if len(schedule) != 4:
        return f"wants four numbers a,b,k_min,k_max, got {schedule}"
    a, b, k_min, k_max = schedule
    if not (0 <= a <= b and 1 <= k_min <= k_max):
        return f"wants 0 <= a <= b and 1 <= k_min <= k_max, got {schedule}"
    if b > 10**9 or k_max > 1000:  # as --steps' maximum; a branch of 1000 model steps is far past any model's reach
        return f"wants b <= 10**9 env steps and k_max <= 1000 model steps, got {schedule}"
    return None


def settings(config: MBPORunConfig) -> MBPOSettings:
    return MBPOSettings(steps=config.steps, warmup_steps=config.warmup_steps, model_every=config.model_every,
                        rollout_every=config.rollout_every, rollouts=config.rollouts,
                        schedule=tuple(int(v) for v in config.k_schedule), model_capacity_rollouts=config.model_retain,
                        real_ratio=config.real_ratio, updates_per_step=config.updates_per_step,
                        batch_size=config.batch_size, seed=config.seed)


class SACLearner:
    """SAC's three optimisers (critic, actor, temperature; Haarnoja et al. 2018), stepped together by the one
    learner step on :func:`worldmodels.mbpo.sac_losses` (disjoint graphs: one backward serves all three), then the
    target critic's Polyak update. :meth:`update` is ONE SAC step."""

    def __init__(self, sac: SAC, *, lr: float) -> None:
        self.sac = sac
        self.optimizers = [torch.optim.Adam(params, lr=lr) for params in sac.parts_parameters().values()]
        self.updates = 0

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        losses = sac_losses(self.sac, batch)
        learner_step(self.optimizers, losses, where=f"sac update {self.updates}", hint="a lower --lr usually fixes this")
        self.sac.update_target()
        self.updates += 1
        return {name: float(value.detach()) for name, value in losses.items()}


EVAL_ENVS = 5  # envs of the evaluation


def save_mbpo(run_dir: str, loop: MBPOLoop, *, learner: "SACLearner", fitter: EnsembleTrainer,
              finished: bool) -> None:
    """Everything the loop holds between two episodes -> ``RUN_DIR/resume`` (:mod:`trainers.runs.loop_resume`)."""
    wm = loop.world_model
    tensors = {**module_tensors("sac", loop.sac), **module_tensors("ensemble", wm.ensemble)}
    records = {}
    for name, optimizer in (("fit", fitter.optimizer), *((f"sac{i}", o) for i, o in enumerate(learner.optimizers))):
        moments, records[name] = optimizer_state(f"optimizer.{name}", optimizer)
        tensors.update(moments)
    for name, replay in (("real", loop.real), ("synthetic", loop.synthetic)):
        tensors.update({f"{name}.{k}": v[:len(replay)].cpu().clone() for k, v in replay.data.items()})
    streams, rng = rng_state(generators(loop, fitter))
    tensors.update(streams)
    driver = loop.driver
    save_checkpoint(run_dir, tensors, {
        "episodes": driver.episodes, "env_steps": driver.steps, "finished": finished, "rng": rng,
        "optimizers": records, "counts": {"real": loop.real.count, "synthetic": loop.synthetic.count},
        "returns": loop.hook.returns, "updates": loop.updates, "learner_updates": learner.updates,
        "fits": fitter.fits, "model_stats": loop.model_stats, "losses": loop.losses})


def restore_mbpo(saved: tuple[dict[str, torch.Tensor], dict[str, Any]], loop: MBPOLoop, *, learner: "SACLearner",
                 fitter: EnsembleTrainer) -> dict[str, Any]:
    """The inverse of :func:`save_mbpo`, into a freshly built loop; returns the saved state."""
    tensors, state = saved
    load_module("sac", loop.sac, tensors)
    load_module("ensemble", loop.world_model.ensemble, tensors)
    for name, optimizer in (("fit", fitter.optimizer), *((f"sac{i}", o) for i, o in enumerate(learner.optimizers))):
        load_optimizer(f"optimizer.{name}", optimizer, tensors, state["optimizers"][name])
    for name, replay in (("real", loop.real), ("synthetic", loop.synthetic)):
        filled = min(state["counts"][name], replay.capacity)
        for key, value in replay.data.items():
            value[:filled] = tensors[f"{name}.{key}"].to(value.device)
        replay.count = state["counts"][name]
    load_rng(tensors, state["rng"], generators(loop, fitter))
    loop.hook.returns = list(state["returns"])
    loop.updates, learner.updates, fitter.fits = state["updates"], state["learner_updates"], state["fits"]
    loop.model_stats, loop.losses = state["model_stats"], state["losses"]
    return state


def generators(loop: MBPOLoop, fitter: EnsembleTrainer) -> dict[str, torch.Generator | None]:
    """The torch streams of MBPO besides the global one (SAC's sampling)."""
    return {"batches": loop.generator, "fit": fitter.generator, "particles": loop.world_model.generator,
            "random_policy": loop.random_policy.generator}


def train_mbpo(config: MBPORunConfig, writer: Any = None) -> Trained:
    """Run MBPO -> :class:`trainers.runs.skeleton.Trained` (the run skeleton saves the SAC agent and its ensemble, then
    evaluates SAC's mean action as loaded vs random).

    Episode ``n`` starts from a reset seeded ``(seed, n)``; between episodes, once ``--checkpoint-every`` env steps
    are due, the loop's whole state goes to ``RUN_DIR/resume`` and a killed run resumes there bit-identically."""
    profiling.set_threads(config.threads, rows=config.batch_size, width=config.hidden)
    device = profiling.resolve_device(config.device)
    began = time.perf_counter()
    env = make_state_env(config.env, 1)
    spec = ActionSpec.from_space(env.single_action_space)
    obs_dim = env.single_observation_space.shape[0]
    pets = PETSRunConfig(env=config.env, seed=config.seed, ensemble=config.ensemble, elites=config.elites,
                         hidden=config.model_hidden, epochs=config.model_epochs, propagation="ts1")
    world_model = build_world_model(pets, obs_dim, spec).to(device)
    fitter = EnsembleTrainer(world_model, lr=pets.lr, weight_decay=pets.weight_decay, batch_size=pets.batch_size,
                             epochs=pets.epochs, holdout=pets.holdout, seed=config.seed)
    sac = SAC(obs_dim, spec, hidden=config.hidden, gamma=config.gamma).to(device)
    learner = SACLearner(sac, lr=config.lr)
    log = None if writer is None else (lambda tag, value, step: writer.add_scalar(tag, value, step))
    loop = MBPOLoop(env, world_model, fitter.fit, sac, settings(config), update=learner.update, log=log,
                    episode_end=lambda driver: next_episode(driver, config.seed))
    saved = load_checkpoint(config.run_dir)
    state = restore_mbpo(saved, loop, learner=learner, fitter=fitter) if saved is not None else {}
    driver = loop.driver
    begin_episodes(driver, config.seed, episodes=state.get("episodes", 0), steps=state.get("env_steps", 0))
    if driver.steps > config.warmup_steps:
        driver.policy = loop.policy
    checkpointed = driver.steps
    while not state.get("finished") and not loop.finished:
        if loop.step() and is_due(driver.steps, checkpointed, config.checkpoint_every):
            save_mbpo(config.run_dir, loop, learner=learner, fitter=fitter, finished=False)
            checkpointed = driver.steps
    if not state.get("finished"):  # a kill during the evaluation resumes here, with nothing left to train
        save_mbpo(config.run_dir, loop, learner=learner, fitter=fitter, finished=True)
    env.close()
    result = loop.result(time.perf_counter() - began)

    def save(directory: Path) -> None:
        save_whole(directory, world_model.cpu(), sac.cpu(), env_id=config.env, known_task=not world_model.learned_reward,
                   training_steps={"env_steps": result["env_steps"], "sac_updates": result["sac_updates"]})

    facts = {"sac_updates": result["sac_updates"], "train_s": result["train_s"]}
    return Trained(save=save, env_steps=result["env_steps"], eval_envs=EVAL_ENVS,
                   eval_extra=lambda model, policy, seed: facts,
                   results={**{key: result[key] for key in ("train_returns", "final_losses", "synthetic_transitions")},
                            "real_transitions": len(loop.real)})
