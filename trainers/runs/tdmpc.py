"""The online TD-MPC2 loop: act with MPPI over the value-equivalent model, replay windows, one update per step.

TD-MPC2 (Hansen et al. 2024, Alg. 1) on the one env driver::

    steps 0 .. seed_steps-1     uniform random actions (the replay fills)
    at seed_steps               `pretrain_updates` updates on the random data
    every later env step        act: MPPI over the model (value bootstrap + prior candidates), or the prior alone
                                learn: `updates_per_step` x (model objective -> one Adam step; prior objective ->
                                one Adam step; Polyak-update the target Q heads)
    end                         -> trainers.runs.skeleton: RUN_DIR/model saved, then evaluated as loaded (the planner, no
                                sampling noise, vs uniform random on the same seeds) -> eval.json

The replay is :class:`trainers.data.online.StreamReplay` (the driver's hook); windows of ``horizon + 1`` rows may
cross an episode boundary, and :func:`worldmodels.tdmpc.valid_transitions` masks the steps past it.
A plain PyTorch loop: the two optimisers step once per update, so no Trainer machinery is needed.
Episode ``n`` resets seeded ``(seed, n)``, and between episodes the whole loop (model, optimisers, replay rows,
RNG states) is checkpointed to ``RUN_DIR/resume``, from which a killed run resumes exactly
(:mod:`trainers.runs.loop_resume`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from gymnasium.vector import VectorEnv

from trainers.modules.learner import learner_step
from trainers.runs.loop_resume import (begin_episodes, is_due, load_checkpoint, load_module, load_optimizer, load_rng,
                                       module_tensors, next_episode, optimizer_state, rng_state, save_checkpoint,
                                       saved_generator)
from trainers.runs.skeleton import Trained
from trainers.data.online import StreamReplay
from worldmodels import profiling
from worldmodels.config import arg, threads_arg
from worldmodels.core import Policy
from worldmodels.driver import Driver
from worldmodels.envs import make_vector
from worldmodels.envs.cartpole_continuous import register_continuous_cartpole
from worldmodels.envs.spaces import ActionSpec
from worldmodels.envs.toy import register_toy_envs
from worldmodels.evaluation import run_episodes
from worldmodels.finite import batch_problem
from worldmodels.policies import ModelPolicy, RandomPolicy
from worldmodels.tdmpc.family import planner_policy, save_whole
from worldmodels.tdmpc import (MODEL_LOSS_PARTS, PriorHead, RunningScale, TDMPCWorldModel, model_loss, prior_loss,
                               valid_transitions)


@dataclass
class TDMPCRunConfig:
    env: str = arg("InvertedPendulum-v5", "gymnasium env id (state vectors) or a pixel env id (frames)")
    steps: int = arg(10_000, "env (agent) steps of the whole run, random seed steps included", minimum=1, maximum=10**9)
    eval_episodes: int = arg(10, "evaluation episodes after training (agent and random on the same seeds)", minimum=1,
                             maximum=10**6)
    run_dir: str = arg("runs/tdmpc", "directory for eval.json, results.json and TensorBoard logs")
    seed: int = arg(0, "seed of the model, the replay sampler and the training envs (eval: seed + 10000)", minimum=0,
                    maximum=2**32 - 1)
    obs: str = arg("auto", "observations: auto (the env's own vectors, else frames), vector or pixels",
                   choices=("auto", "vector", "pixels"))
    image_size: int = arg(64, "frame side for pixel observations (a multiple of 16)", minimum=16, maximum=1024)
    max_episode_steps: Optional[int] = arg(None, "truncate episodes after this many steps (None = env default)", minimum=1,
                                           maximum=10**7)
    seed_steps: int = arg(1000, "uniform random steps before the agent acts and learns", minimum=1, maximum=10**9)
    pretrain_updates: int = arg(500, "updates on the random data once seed_steps is reached", minimum=0, maximum=10**9)
    updates_per_step: int = arg(1, "model + prior updates per env step after seed_steps", minimum=0, maximum=1000)
    batch_size: int = arg(256, "replayed windows per update", minimum=1, maximum=65536)
    horizon: int = arg(3, "model-loss horizon H and the planning horizon (TD-MPC2: 3)", minimum=1, maximum=1000)
    rho: float = arg(0.5, "temporal weight rho^t of the model and prior losses (TD-MPC2's lambda)", above=0.0, maximum=1.0)
    discount: float = arg(0.99, "TD discount gamma", above=0.0, maximum=1.0)
    # Adam moves every weight by about lr per step: past 1 it only diverges
    lr: float = arg(3e-4, "Adam learning rate (the encoder uses 0.3x, as TD-MPC2)", above=0.0, maximum=1.0)
    tau: float = arg(0.01, "Polyak rate of the target Q heads", above=0.0, maximum=1.0)
    entropy_coef: float = arg(1e-4, "prior entropy coefficient alpha of the prior objective", minimum=0.0,
                              maximum=100.0)
    # loss weights: TD-MPC2's largest is 20
    consistency_scale: float = arg(20.0, "weight c_d of the latent-consistency loss", minimum=0.0, maximum=10_000.0)
    reward_scale: float = arg(0.1, "weight c_r of the reward loss", minimum=0.0, maximum=10_000.0)
    value_scale: float = arg(0.1, "weight c_q of the TD value loss", minimum=0.0, maximum=10_000.0)
    cont_scale: float = arg(1.0, "weight c_c of the continue (termination) loss", minimum=0.0, maximum=10_000.0)
    # a clip this high is no clip: a larger one is a typo
    grad_clip: float = arg(20.0, "gradient-norm clip of both optimisers", above=0.0, maximum=1e9)
    latent_dim: int = arg(64, "latent width (a multiple of simnorm_group)", minimum=8, maximum=65536)
    simnorm_group: int = arg(8, "SimNorm group size V", minimum=2, maximum=65536)
    hidden: int = arg(256, "MLP width", minimum=8, maximum=65536)
    num_q: int = arg(5, "Q ensemble size", minimum=2, maximum=100)
    planner: str = arg("mppi", "how the agent acts: mppi (continuous actions) or prior (the policy prior alone)",
                       choices=("mppi", "prior"))
    candidates: int = arg(256, "MPPI candidates per iteration (TD-MPC2: 512)", minimum=1, maximum=65536)
    iterations: int = arg(4, "MPPI iterations (TD-MPC2: 6)", minimum=1, maximum=1000)
    prior_candidates: int = arg(24, "prior rollouts mixed into the candidates (TD-MPC2: 24)", minimum=0, maximum=65536)
    # lambda is in return units: returns of 10**4 exist, a larger lambda weighs all alike
    temperature: float = arg(0.1, "MPPI temperature lambda, in return units: lower weighs the best candidates more", above=0.0,
                             maximum=10_000.0)
    # a fraction of the Box half-width: past 100 every perturbed action is clipped to a bound
    noise_std: float = arg(0.3, "MPPI perturbation std, as a fraction of the Box half-width", above=0.0, maximum=100.0)
    # An update replays windows of horizon + 1 rows: a smaller ring never holds one, and the run learns nothing.
    capacity: int = arg(1_000_000, "replay capacity in rows", minimum=1, maximum=10**9,
                        check=lambda c: None if c.capacity >= c.horizon + 1 else
                        f"must hold one training window: at least --horizon + 1 = {c.horizon + 1} rows")
    checkpoint_every: int = arg(1000, "env steps between checkpoints (RUN_DIR/resume, at the next episode end): a "
                                      "killed run resumes there", minimum=1, maximum=10**9)
    threads: str = threads_arg("1")
    device: str = arg("cpu", "torch device: auto, cpu or cuda")


def make_env(env_id: str, num_envs: int, *, obs: str, image_size: int = 64,
             max_episode_steps: int | None = None) -> VectorEnv:
    """A NEXT_STEP-autoreset vector env of the env's own vector observations (``obs="vector"``) or of frames;
    ``auto`` is the factory's rule (:func:`worldmodels.envs.factory.observation_kind`)."""
    register_toy_envs()
    register_continuous_cartpole()
    return make_vector(env_id, num_envs, image_size=image_size, obs=obs, max_episode_steps=max_episode_steps)


def build_model(config: TDMPCRunConfig, obs_shape: tuple[int, ...], action_spec: ActionSpec) -> TDMPCWorldModel:
    if config.latent_dim % config.simnorm_group:
        raise ValueError(f"--latent-dim {config.latent_dim} must be a multiple of --simnorm-group {config.simnorm_group}")
    return TDMPCWorldModel(obs_shape, action_spec, latent_dim=config.latent_dim, hidden=config.hidden,
                           simnorm_group=config.simnorm_group, num_q=config.num_q, discount=config.discount)


def planner_settings(config: TDMPCRunConfig) -> dict[str, Any]:
    """How the agent acts (:data:`worldmodels.tdmpc.family.PLANNER_KEYS`), saved with the model."""
    return {"acting": config.planner, "horizon": config.horizon, "candidates": config.candidates,
            "iterations": config.iterations, "prior_candidates": config.prior_candidates,
            "temperature": config.temperature, "noise_std": config.noise_std, "seed": config.seed}


def env_options(config: TDMPCRunConfig) -> dict[str, Any]:
    """The env settings of training and evaluation, saved with the model so that a loaded one acts alike."""
    return {"obs": config.obs, "image_size": config.image_size, "max_episode_steps": config.max_episode_steps}


def acting_policy(model: TDMPCWorldModel, config: TDMPCRunConfig, *, explore: bool) -> Policy:
    """MPPI over the model with the value bootstrap and the prior's candidates, or the prior alone: the one rule
    of a loaded model too (:func:`worldmodels.tdmpc.family.planner_policy`)."""
    return planner_policy(model, planner_settings(config), explore=explore)


class TDMPCLearner:
    """The two optimisers (model objective; prior objective, TD-MPC2 Sec. 3.1) and the target update: :meth:`update` is ONE training step."""

    def __init__(self, model: TDMPCWorldModel, config: TDMPCRunConfig) -> None:
        self.model, self.config = model, config
        rest = [p for name, p in model.named_parameters()
                if not name.startswith(("encoder.", "prior.", "target_q.")) and p.requires_grad]
        self.model_optim = torch.optim.Adam([{"params": model.encoder.parameters(), "lr": 0.3 * config.lr},
                                             {"params": rest}], lr=config.lr)
        self.prior_optim = torch.optim.Adam(model.prior.parameters(), lr=config.lr, eps=1e-5)
        self.loss_scales = {"consistency": config.consistency_scale, "reward": config.reward_scale,
                            "value": config.value_scale, "cont": config.cont_scale}
        assert set(self.loss_scales) == set(MODEL_LOSS_PARTS), f"loss scales {sorted(self.loss_scales)} != parts"
        self.scale = RunningScale().to(next(model.parameters()).device)
        self.updates = 0

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """``batch``: ``(B, H+1, ...)`` replay windows -> the unweighted loss parts and the prior loss."""
        config, model = self.config, self.model
        losses, rolled = model_loss(model, batch, rho=config.rho)
        # A NaN batch (the env's data) is not the learning rate's fault: the hint says which it was.
        learner_step(self.model_optim, losses, scales=self.loss_scales, clip=config.grad_clip,
                     where=f"tdmpc update {self.updates}", hint=lambda: batch_problem(batch) or "lower --lr")
        prior = prior_loss(model, rolled, self.scale, rho=config.rho, entropy_coef=config.entropy_coef,
                           valid=valid_transitions(batch["is_first"]))
        # The prior's backward also reaches the Q heads' .grad, cleared by the next model step's zero_grad.
        learner_step(self.prior_optim, {"prior": prior["prior"]}, clip=config.grad_clip,
                     where=f"tdmpc prior update {self.updates}", hint="lower --lr")
        model.update_target(config.tau)
        self.updates += 1
        return {name: float(value.detach()) for name, value in {**losses, **prior}.items()}


EVAL_ENVS = 4  # envs of the evaluation (MPPI plans for all of them in one batch)


REPLAY_FIELDS = ("obs", "action", "reward", "terminated", "truncated", "is_first")


def _planner_generator(policy: Policy) -> dict[str, torch.Generator | None]:
    planner = getattr(policy, "planner", None)
    return {"planner": getattr(planner, "generator", None)}


def save_tdmpc(run_dir: str, loop: dict[str, Any], *, learner: TDMPCLearner, replay: StreamReplay,
               rng: np.random.Generator, random_policy: RandomPolicy, acting: Policy) -> None:
    """Everything the loop holds between two episodes -> ``RUN_DIR/resume`` (:mod:`trainers.runs.loop_resume`)."""
    tensors = {**module_tensors("model", learner.model), **module_tensors("scale", learner.scale)}
    records = {}
    for name, optimizer in (("model", learner.model_optim), ("prior", learner.prior_optim)):
        moments, records[name] = optimizer_state(f"optimizer.{name}", optimizer)
        tensors.update(moments)
    filled = len(replay)
    tensors.update({f"replay.{key}": torch.from_numpy(np.ascontiguousarray(replay.data[0][key][:filled]))
                    for key in REPLAY_FIELDS})
    streams, rngs = rng_state({"random_policy": random_policy.generator, **_planner_generator(acting)}, {"replay": rng})
    tensors.update(streams)
    save_checkpoint(run_dir, tensors, {**loop, "rng": rngs, "optimizers": records, "replay_count": replay.count[0],
                                       "updates": learner.updates})


def restore_tdmpc(saved: tuple[dict[str, torch.Tensor], dict[str, Any]], *, learner: TDMPCLearner,
                  replay: StreamReplay, rng: np.random.Generator, random_policy: RandomPolicy,
                  acting: Policy) -> dict[str, Any]:
    """The inverse of :func:`save_tdmpc`, into freshly built objects; returns the loop's saved state."""
    tensors, state = saved
    load_module("model", learner.model, tensors)
    load_module("scale", learner.scale, tensors)
    for name, optimizer in (("model", learner.model_optim), ("prior", learner.prior_optim)):
        load_optimizer(f"optimizer.{name}", optimizer, tensors, state["optimizers"][name])
    if replay.frames_on_disk:
        raise ValueError("a TD-MPC replay with frames on disk cannot be resumed")
    filled = min(state["replay_count"], replay.capacity)
    for key in REPLAY_FIELDS:
        replay.data[0][key][:filled] = tensors[f"replay.{key}"].numpy()
    replay.count[0] = state["replay_count"]
    planner = getattr(acting, "planner", None)
    if planner is not None:
        planner.generator = saved_generator(tensors, "planner")
    load_rng(tensors, state["rng"], {"random_policy": random_policy.generator}, {"replay": rng})
    learner.updates = state["updates"]
    return {key: state[key] for key in ("returns", "losses", "finished", "episodes", "env_steps")}


def train_tdmpc(config: TDMPCRunConfig, writer: Any = None) -> Trained:
    """Run the online loop -> :class:`trainers.runs.skeleton.Trained` (the run skeleton saves, evaluates and records)."""
    if config.seed_steps >= config.steps and config.pretrain_updates == 0:
        raise ValueError(f"--seed-steps {config.seed_steps} >= --steps {config.steps} with no pretrain updates: "
                         "nothing would be learned")
    profiling.set_threads(config.threads, rows=config.batch_size, width=config.hidden)
    device = profiling.resolve_device(config.device)
    began = time.perf_counter()
    torch.manual_seed(config.seed)
    env = make_env(config.env, 1, obs=config.obs, image_size=config.image_size,
                   max_episode_steps=config.max_episode_steps)
    obs_shape = tuple(env.single_observation_space.shape)
    action_spec = ActionSpec.from_space(env.single_action_space)
    model = build_model(config, obs_shape, action_spec).to(device)
    learner = TDMPCLearner(model, config)
    pixels = len(obs_shape) == 3
    replay = StreamReplay(streams=1, capacity=config.capacity, obs_shape=obs_shape, action_spec=action_spec,
                          obs_dtype=np.uint8 if pixels else np.float32)
    random_policy = RandomPolicy(action_spec, seed=config.seed)
    driver = Driver(env, random_policy, hooks=[replay], device=device)
    acting = acting_policy(model, config, explore=True)
    rng = np.random.default_rng(config.seed)
    loop: dict[str, Any] = {"returns": [], "losses": {}, "finished": False, "episodes": 0, "env_steps": 0}
    saved = load_checkpoint(config.run_dir)
    if saved is not None:
        loop.update(restore_tdmpc(saved, learner=learner, replay=replay, rng=rng, random_policy=random_policy,
                                  acting=acting))
    returns, episode_return = loop["returns"], 0.0
    begin_episodes(driver, config.seed, episodes=loop["episodes"], steps=loop["env_steps"])
    if driver.steps > config.seed_steps:
        driver.policy = acting

    def learn(count: int) -> None:
        for _ in range(count):
            if replay.has_window(config.horizon + 1):
                batch = replay.sample(rng, config.batch_size, config.horizon + 1)
                loop["losses"] = learner.update({key: value.to(device) for key, value in batch.items()})

    def checkpoint(finished: bool) -> None:
        loop.update(finished=finished, episodes=driver.episodes, env_steps=driver.steps)
        save_tdmpc(config.run_dir, loop, learner=learner, replay=replay, rng=rng, random_policy=random_policy,
                   acting=acting)

    checkpointed = driver.steps
    while not loop["finished"] and driver.steps < config.steps:
        if driver.steps == config.seed_steps:
            learn(config.pretrain_updates)
            driver.policy = acting
        driver.step()
        episode_return += float(driver.current["reward"][0])  # the reward of arriving at the row just reached
        ended = next_episode(driver, config.seed)
        if ended:
            returns.append(episode_return)
            if writer is not None:
                writer.add_scalar("env/return", episode_return, driver.steps)
            episode_return = 0.0
        if driver.steps > config.seed_steps:
            learn(config.updates_per_step)
            if writer is not None and learner.updates % 100 == 0:
                for name, value in loop["losses"].items():
                    writer.add_scalar(f"train/loss/{name}", value, learner.updates)  # losses: x = updates
        if ended and is_due(driver.steps, checkpointed, config.checkpoint_every):
            checkpoint(finished=False)
            checkpointed = driver.steps
    if not loop["finished"]:
        if driver.steps <= config.seed_steps:
            learn(config.pretrain_updates)
        checkpoint(finished=True)  # a kill during the evaluation resumes here, with nothing left to train
    losses = loop["losses"]
    env.close()
    train_s = time.perf_counter() - began
    model.eval()
    facts = {"updates": learner.updates, "train_s": round(train_s, 1)}

    def save(directory: Path) -> None:
        save_whole(directory, model.cpu(), env_id=config.env, env_options=env_options(config),
                   planner=planner_settings(config), training_steps={"env_steps": driver.steps, **facts})

    def eval_extra(loaded: Any, policy: Policy, seed: int) -> dict[str, Any]:
        """How it acted, and the prior alone on the same seeds: what planning adds on top of it."""
        planner = getattr(policy, "planner", None)
        extra: dict[str, Any] = {**facts, "acting": "mppi" if planner is not None else "prior",
                                 "plan_ms_per_action": round(1e3 * planner.seconds / max(planner.actions, 1), 3)
                                 if planner else None}
        if planner is not None:
            prior_only = ModelPolicy(loaded.world_model, PriorHead(loaded.world_model, sample=False))
            eval_env = make_env(config.env, min(config.eval_episodes, EVAL_ENVS), obs=config.obs,
                                image_size=config.image_size, max_episode_steps=config.max_episode_steps)
            try:
                extra["prior_returns"] = run_episodes(eval_env, prior_only, episodes=config.eval_episodes, seed=seed,
                                                      device=device).tolist()
            finally:
                eval_env.close()
        return extra

    return Trained(save=save, env_steps=driver.steps, eval_envs=EVAL_ENVS, eval_extra=eval_extra,
                   results={"train_returns": returns, "final_losses": losses, "replay_rows": len(replay)})
