"""The online DreamerV3 agent as one LightningModule (Hafner et al. 2023).

One training step on a replayed ``(B, T)`` chunk:

1. world model: Eq. 5 loss on the chunk -> posteriors ``(B, T)``; its own optimiser step.
2. imagination: all ``B*T`` posteriors (sg) start ``horizon``-step latent rollouts of the actor
   (``world_model.imagine``, the one latent loop; no gradient flows through the dynamics: DreamerV3
   trains the actor with REINFORCE on discrete and continuous actions)::

       s_0 (replayed posterior, sg) -a_0-> s_1 -a_1-> ... s_H       a_k ~ π(.|s_k), clipped to the space
       traj.feature (N, H+1, F)   traj.action (N, H, A)   traj.reward, traj.cont (N, H): r_1..r_H, c_1..c_H
3. critic: two-hot loss toward λ-returns (Eq. 7) + slow-critic regulariser; its own optimiser step.
4. actor: REINFORCE with percentile-normalised advantages + entropy (Eq. 11); its own optimiser step.

Three optimisers mean manual optimisation (``automatic_optimization = False``): each one runs
zero_grad -> manual_backward -> clip_gradients -> finite check -> step: the project's one learner step
(:func:`trainers.modules.learner.learner_step`), called by :meth:`_update`.
Lightning counts every optimiser step in ``global_step``: one training step adds 3.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch.profiler import record_function

from trainers.modules.guards import scales_loss
from trainers.modules.learner import learner_step
from trainers.modules.losses import weighted_sum
from trainers.data.online import BatchRequest
from worldmodels.config import arg, from_dict, to_dict
from worldmodels.core import State, flatten_start
from worldmodels.envs.spaces import ActionSpec
from worldmodels.families.dreamer import build as build_dreamer
from worldmodels.finite import batch_problem
from worldmodels.models.actor_critic import (ActorRecorder, ReturnNormalizer, actor_loss, critic_loss, ema_update,
                                             lambda_return, trajectory_weight)
from worldmodels.models.world_model import DreamerWorldModel
from worldmodels.policies import ActorHead
from worldmodels.kpis import log_return_vs_env_steps

OPTIMISERS_PER_STEP = 3
# The update's phases as torch.profiler ranges (wm bench --what profile reads them; ~1 us each otherwise).
PHASES = ("update/world_model_loss", "update/world_model_step", "update/imagination_and_ac_loss",
          "update/actor_critic_steps")
# DreamerV3 loss scales (Eq. 5: β_pred = 1, β_dyn = 0.5, β_rep = 0.1; Eq. 11: η = 3e-4).
DEFAULT_LOSS_SCALES = {"rec": 1.0, "reward": 1.0, "cont": 1.0, "dyn": 0.5, "rep": 0.1,
                       "policy": 1.0, "entropy": 3e-4, "value": 1.0, "value_slow": 1.0}


@dataclass
class DreamerAgentConfig:
    """Agent hyperparameters; defaults follow DreamerV3 (arXiv v1, Table B.1 / Sec. B) at size S."""

    deter: int = arg(512, "GRU (deterministic state) units", minimum=1, maximum=65536)
    hidden: int = arg(512, "hidden units of every MLP layer", minimum=1, maximum=65536)
    stoch: int = arg(32, "number of categorical latents", minimum=1, maximum=1024)
    classes: int = arg(32, "classes per categorical latent", minimum=2, maximum=1024)
    # channels double per stage: 4096 at the first is past any GPU's memory at 4 stages
    depth: int = arg(32, "conv channels of the first encoder stage (doubles per stage)", minimum=1, maximum=4096)
    # the image side (<= 1024 = 2**10) must be a multiple of 2**stages
    stages: int = arg(4, "conv stages; the image side must be a multiple of 2**stages", minimum=1, maximum=10)
    layers: int = arg(2, "hidden layers of the reward/continue heads, actor, critic and the vector-observation "
                         "encoder/decoder", minimum=1, maximum=64)
    unimix: float = arg(0.01, "uniform mix of latent and actor categoricals", minimum=0, maximum=1)
    # a floor of 100 nats already switches the KL terms off
    free_nats: float = arg(1.0, "free bits: KL terms below this many nats are not penalised", minimum=0, maximum=100.0)
    num_bins: int = arg(255, "two-hot bins over symlog [-20, 20] for reward and value", minimum=2, maximum=65536)
    horizon: int = arg(15, "imagination horizon", minimum=1, maximum=10_000)
    gamma: float = arg(0.997, "discount (DreamerV3: 1 - 1/333)", above=0, maximum=1)
    lam: float = arg(0.95, "λ of the λ-return (Eq. 7)", minimum=0, maximum=1)
    slow_critic_decay: float = arg(0.98, "EMA decay of the slow critic used as regulariser", minimum=0, maximum=1)
    return_norm_decay: float = arg(0.99, "EMA decay of the 5th-95th return percentile range", minimum=0, maximum=1)
    # Adam moves every weight by about lr per step: past 1 it only diverges
    model_lr: float = arg(1e-4, "world model Adam learning rate", above=0, maximum=1.0)
    actor_lr: float = arg(3e-5, "actor Adam learning rate", above=0, maximum=1.0)
    critic_lr: float = arg(3e-5, "critic Adam learning rate", above=0, maximum=1.0)
    # past 1 the epsilon, not the gradient scale, sets Adam's step
    adam_eps: float = arg(1e-8, "Adam epsilon (all three optimisers)", above=0, maximum=1.0)
    # a clip this high is no clip: a larger one is a typo
    model_grad_clip: float = arg(1000.0, "world model gradient-norm clip", above=0, maximum=1e9)
    actor_grad_clip: float = arg(100.0, "actor gradient-norm clip", above=0, maximum=1e9)
    critic_grad_clip: float = arg(100.0, "critic gradient-norm clip", above=0, maximum=1e9)
    loss_scales: dict = arg(dict(DEFAULT_LOSS_SCALES), "weights of the named loss parts (dict or 'rec=1,dyn=0.5,...')")


def parse_loss_scales(value: dict | str) -> dict[str, float]:
    if isinstance(value, str):
        value = dict(item.split("=", 1) for item in value.split(",") if item)
    scales = {**DEFAULT_LOSS_SCALES, **{k: float(v) for k, v in value.items()}}
    unknown = sorted(set(scales) - set(DEFAULT_LOSS_SCALES))
    if unknown:
        raise ValueError(f"unknown loss scale(s) {unknown}; known: {sorted(DEFAULT_LOSS_SCALES)}")
    return scales


class DreamerModule(L.LightningModule):
    """World model, actor, critic (+ slow critic) trained online from replayed chunks."""

    def __init__(self, *, obs_shape: tuple[int, int, int] | list[int], action_spec: ActionSpec | dict,
                 config: DreamerAgentConfig | dict) -> None:
        super().__init__()
        self.automatic_optimization = False
        spec = action_spec if isinstance(action_spec, ActionSpec) else ActionSpec.from_dict(action_spec)
        cfg = config if isinstance(config, DreamerAgentConfig) else from_dict(DreamerAgentConfig, config)
        # Plain types only, so the .ckpt loads with weights_only=True.
        self.save_hyperparameters({"obs_shape": list(obs_shape), "action_spec": spec.to_dict(), "config": to_dict(cfg)})
        self.action_spec, self.config = spec, cfg
        self.loss_scales = parse_loss_scales(cfg.loss_scales)
        # The loader's builder (worldmodels.families.dreamer.build): the modules are constructed in one place.
        parts = build_dreamer({"obs_shape": list(obs_shape), "action_spec": spec.to_dict(), "config": to_dict(cfg)})
        self.world_model: DreamerWorldModel = parts["world_model"]
        self.actor, self.critic = parts["actor"], parts["critic"]
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.return_norm = ReturnNormalizer(decay=cfg.return_norm_decay)
        self.replay: Any = None  # the online dataset, attached by the caller; its state rides in checkpoints
        self._pending_replay_state: dict | None = None

    # ------------------------------------------------------------------ acting (ModelPolicy(world_model, actor_head()))

    def actor_head(self, *, sample: bool = True) -> ActorHead:
        """The actor as a latent policy (samples, or the mode with ``sample=False``); acts inside the space."""
        return ActorHead(self.actor, self.action_spec, sample=sample)

    def dream_models(self) -> tuple[DreamerWorldModel, ActorHead]:
        """What the dream callbacks render: the world model and the actor acting in it."""
        return self.world_model, self.actor_head()

    # ------------------------------------------------------------------ training

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # The online loader yields requests: acting and sampling happen here, in step with training, so a
        # checkpoint after step k holds exactly what batch k left (a prefetched batch would act ahead of it).
        # Lightning converted the placeholder to the run's precision (bf16-true, ...): convert the real batch.
        return self.trainer.precision_plugin.convert_input(self.replay.next_batch()) if isinstance(batch, BatchRequest) \
            else batch

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        model_opt, actor_opt, critic_opt = self.optimizers()
        cfg = self.config
        batch = dict(batch)
        B, T = batch["obs"].shape[:2]
        # A replayed chunk starts from the initial state: row 0 has no usable history.
        is_first = batch["is_first"].clone()
        is_first[:, 0] = True
        batch["is_first"] = is_first

        with record_function(PHASES[0]):
            model_parts, post, model_metrics = self.world_model.loss(batch)
        with record_function(PHASES[1]):
            model_loss = self._update(model_opt, model_parts, cfg.model_grad_clip, part="model", batch=batch)

        with record_function(PHASES[2]):
            ac_parts, imag_metrics = self.actor_critic_losses(post, batch["terminated"])
        actor_parts = {k: ac_parts[k] for k in ("policy", "entropy")}
        critic_parts = {k: ac_parts[k] for k in ("value", "value_slow")}
        with record_function(PHASES[3]):
            self._update(actor_opt, actor_parts, cfg.actor_grad_clip, part="actor", batch=batch)
            self._update(critic_opt, critic_parts, cfg.critic_grad_clip, part="critic", batch=batch)
            ema_update(self.slow_critic, self.critic, cfg.slow_critic_decay)

        logs = {f"train/loss/{k}": v.detach() for k, v in {**model_parts, **ac_parts}.items()}
        logs["train/loss/model"] = model_loss.detach()
        logs.update({f"train/{k}": v for k, v in model_metrics.items()})
        logs.update({f"imag/{k}": v for k, v in imag_metrics.items()})
        if self.replay is not None:
            env = self.replay.metrics()
            logs.update({f"env/{k}": float(v) for k, v in env.items() if k != "return"})
            if "return" in env and self.logger is not None and self.trainer.is_global_zero:
                # Returns go on the env-step axis, never on optimiser steps (DESIGN.md, TensorBoard tags).
                self.logger.log_metrics({"env/return": float(env["return"])}, step=int(env["steps"]))
                log_return_vs_env_steps(self.logger, int(env["steps"]), float(env["return"]))
        self.log_dict(logs, on_step=True, prog_bar=False, batch_size=B * T)

    def actor_critic_losses(self, post: State, terminated: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict]:
        """Imagine from every posterior in ``post`` (B, T, ...) and return the actor/critic parts (unweighted)."""
        cfg = self.config
        start = flatten_start(post)  # (N, ...) with N = B*T, detached
        start["action"] = start["deter"].new_zeros(start["deter"].shape[0], self.action_spec.dim)  # the actor picks a_0
        # The actor runs ONCE per state: the recorder keeps the outputs it acted on, with gradient, for its loss.
        recorder = ActorRecorder(self.actor)
        with torch.no_grad():  # REINFORCE: no gradient through the imagined dynamics
            traj = self.world_model.imagine(start, ActorHead(recorder, self.action_spec), cfg.horizon)
        feat, action = traj.feature, traj.action  # (N, H+1, F), (N, H, A)
        # The critic runs ONCE, with gradient: its loss uses these logits, its value targets their detached mean.
        critic_logits = self.critic(feat)  # (N, H+1, K)
        with torch.no_grad():
            reward, cont = traj.reward, traj.cont  # (N, H): r_1..r_H, c_1..c_H, the heads at s_1..s_H
            start_cont = 1.0 - terminated.reshape(-1, 1).float()  # (N, 1): c_0 from data
            value = self.critic.mean(critic_logits.detach())  # (N, H+1)
            slow_value = self.slow_critic.mean(self.slow_critic(feat))  # (N, H+1)
            returns = lambda_return(reward, cont, value, gamma=cfg.gamma, lam=cfg.lam)  # (N, H)
            weight = trajectory_weight(torch.cat([start_cont, cont], 1), gamma=cfg.gamma)[:, :-1]  # (N, H)
            self.return_norm.update(returns)
            scale = self.return_norm.scale()
        parts = actor_loss(recorder.distribution(), action, returns, value[:, :-1], weight, scale)
        parts.update(critic_loss(self.critic, critic_logits[:, :-1], returns, slow_value[:, :-1], weight))
        metrics = {"return": returns.mean(), "return_scale": scale, "value": value.mean(), "reward": reward.mean(),
                   "entropy": -parts["entropy"].detach()}
        return parts, metrics

    def _update(self, optimizer, parts: dict[str, torch.Tensor], clip: float, *, part: str,
                batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One optimiser step on the weighted ``parts``; a non-finite loss or gradient stops training before it."""
        loss = weighted_sum(parts, self.loss_scales)
        # A diverged world model often shows first in the actor's loss: the hint names every rate, unless the
        # batch itself holds NaN (a NaN reward from the env used to be blamed on the learning rate).
        learner_step(optimizer, parts, total=loss, backward=self.manual_backward,
                     clip_with=lambda: self.clip_gradients(optimizer, gradient_clip_val=clip,
                                                           gradient_clip_algorithm="norm"),
                     check_norm=not scales_loss(self.trainer),
                     where=f"dreamer step {self.global_step // OPTIMISERS_PER_STEP}, {part} update",
                     hint=lambda: batch_problem(batch) or "a lower --model-lr / --actor-lr / --critic-lr usually fixes this")
        return loss

    # ------------------------------------------------------------------ checkpoints of the replay position

    def attach_replay(self, replay: Any) -> None:
        self.replay = replay
        if self._pending_replay_state is not None:
            replay.load_state_dict(self._pending_replay_state)
            self._pending_replay_state = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.replay is not None:
            checkpoint["replay"] = self.replay.state_dict()
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                # Every rank runs this hook; only rank zero writes the file. Gather each rank's own replay
                # position so a resumed rank r continues its own env stream and episode store.
                states: list[Any] = [None] * torch.distributed.get_world_size()
                torch.distributed.all_gather_object(states, checkpoint["replay"])
                checkpoint["replay_per_rank"] = states

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        per_rank = checkpoint.get("replay_per_rank")
        if per_rank is not None and self.global_rank < len(per_rank):
            self._pending_replay_state = per_rank[self.global_rank]
            if self.replay is not None:
                self.attach_replay(self.replay)
        elif "replay" in checkpoint:
            self._pending_replay_state = checkpoint["replay"]
            if self.replay is not None:
                self.attach_replay(self.replay)

    # ------------------------------------------------------------------ optimisers

    def configure_optimizers(self):
        cfg = self.config
        return [
            torch.optim.Adam(self.world_model.parameters(), lr=cfg.model_lr, eps=cfg.adam_eps),
            torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, eps=cfg.adam_eps),
            torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, eps=cfg.adam_eps),
        ]
