"""DreamerV3 world model: encoder + RSSM + decoder, reward and continue heads (Hafner et al. 2023).

The observation shape picks the encoder and decoder: ``(H, W, C)`` uint8 frames the conv pair
(:mod:`worldmodels.models.conv`), ``(D,)`` float vectors the MLP pair (:mod:`worldmodels.models.mlp_codec`).

World model loss (Eq. 5 DreamerV3), returned as unweighted named parts::

    L = β_pred (rec + reward + cont) + β_dyn dyn + β_rep rep        β = 1, 0.5, 0.1

    rec    = ||x̂_t - x_t||²  summed over pixels; images in [-0.5, 0.5]. For images DreamerV3 uses this
             MSE (a unit-variance Gaussian); symlog targets are only for vector observations (Sec. 3):
           = ||x̂_t - symlog(x_t)||²  summed over the vector's D entries (Eq. 8)
    reward = -ln p(symlog r_t | s_t)   two-hot over 255 symexp bins in [-20, 20]     (Eq. 10)
    cont   = -ln p(c_t | s_t),  c_t = 1 - terminated[t]                             (Bernoulli)
    dyn    = max(1, KL[sg(q(z_t|h_t,x_t)) || p(z_t|h_t)])                          (Eq. 6, free bits 1 nat)
    rep    = max(1, KL[q(z_t|h_t,x_t) || sg(p(z_t|h_t))])

Row t of a batch (DESIGN.md) gives obs[t], reward[t] (received on arriving at obs[t]) and
terminated[t]; the posterior state s_t (built from obs[t] and action[t-1]) predicts all three::

    obs[t-1] --action[t-1]--> obs[t]    reward[t], terminated[t]   <- heads at s_t
"""

from __future__ import annotations

import torch
from torch import nn

from worldmodels.core import LatentPolicy, State, Trajectory, rollout
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.conv import ConvDecoder, ConvEncoder, to_float_image, to_uint8_image
from worldmodels.models.distributions import categorical_kl
from worldmodels.models.heads import ContinueHead, RewardHead
from worldmodels.models.mlp_codec import MLPDecoder, MLPEncoder
from worldmodels.models.rssm import RSSM

WORLD_MODEL_LOSSES = ("rec", "reward", "cont", "dyn", "rep")


class DreamerWorldModel(nn.Module):
    """Encoder, RSSM, decoder and heads; ``loss(batch)`` gives Eq. 5's parts and the posteriors.

    Implements :class:`worldmodels.core.WorldModel`: its state is the RSSM state ``deter (B, D)``,
    ``stoch (B, S, K)``, ``logits (B, S, K)`` plus ``action (B, A)``, the action taken at that state.
    ``obs_shape`` ``(H, W, C)``: conv encoder/decoder (``depth``, ``stages``); ``(D,)``: MLP encoder/decoder
    (``hidden``, ``layers``), and ``observe`` / ``decode`` take and give float ``(..., D)`` vectors.
    """

    def __init__(self, *, obs_shape: tuple[int, ...], action_spec: ActionSpec, deter: int, hidden: int,
                 stoch: int, classes: int, depth: int, stages: int, layers: int, unimix: float = 0.01,
                 free_nats: float = 1.0, num_bins: int = 255) -> None:
        super().__init__()
        self.obs_shape, self.action_spec = tuple(obs_shape), action_spec
        action_dim = action_spec.dim
        if len(self.obs_shape) not in (1, 3):
            raise ValueError(f"obs_shape {self.obs_shape} is neither (H, W, C) frames nor (D,) vectors")
        self.vector_obs = len(self.obs_shape) == 1
        if self.vector_obs:
            self.encoder: nn.Module = MLPEncoder(self.obs_shape[0], hidden=hidden, layers=layers)
        else:
            side, _, channels = self.obs_shape
            self.encoder = ConvEncoder(channels, side, depth, stages, norm="layer", act="silu")
        self.rssm = RSSM(embed_dim=self.encoder.out_dim, action_dim=action_dim, deter=deter, hidden=hidden,
                         stoch=stoch, classes=classes, unimix=unimix)
        feat = self.rssm.feat_dim
        if self.vector_obs:
            self.decoder: nn.Module = MLPDecoder(feat, self.obs_shape[0], hidden=hidden, layers=layers)
        else:
            self.decoder = ConvDecoder(feat, channels, side, depth, stages, norm="layer", act="silu")
        self.reward = RewardHead(feat, hidden=hidden, layers=layers, num_bins=num_bins)
        self.cont = ContinueHead(feat, hidden=hidden, layers=layers)
        self.free_nats = free_nats
        self.feature_dim = feat

    # ------------------------------------------------------------------ worldmodels.core.WorldModel

    def initial(self, batch_size: int) -> State:
        state = self.rssm.initial(batch_size)
        return {**state, "action": state["deter"].new_zeros(batch_size, self.action_spec.dim)}

    def observe(self, obs: torch.Tensor, action: torch.Tensor | None, is_first: torch.Tensor,
                state: State | None = None) -> tuple[State, State]:
        """Posteriors of a chunk (see :class:`worldmodels.core.WorldModel`); ``obs (B, T, H, W, C)`` uint8 or ``(B, T, D)``."""
        B, T = obs.shape[:2]
        embed = self.embed(obs)  # (B, T, E)
        if action is None:
            action = embed.new_zeros(B, T, self.action_spec.dim)
        action = action.to(embed.device, embed.dtype)
        prev_action = None if state is None else state["action"].to(embed.dtype)
        rssm_state = None if state is None else {k: v for k, v in state.items() if k != "action"}
        post, _ = self.rssm.observe(embed, action, is_first.to(embed.device).bool(), rssm_state, prev_action)
        states = {**post, "action": action}  # (B, T, ...)
        return states, {k: v[:, -1] for k, v in states.items()}

    def _prior_step(self, state: State, action: torch.Tensor) -> tuple[State, torch.Tensor, torch.Tensor]:
        rssm_state = {k: v for k, v in state.items() if k != "action"}
        prior = self.rssm.img_step(rssm_state, action)
        feat = self.rssm.feature(prior)  # (B, F)
        reward = self.reward.mean(self.reward(feat))  # (B,)
        cont = self.cont.prob(self.cont(feat))  # (B,)
        return {**prior, "action": torch.zeros_like(action)}, reward, cont

    def imagine(self, start: State, policy_or_actions: LatentPolicy | torch.Tensor, horizon: int, *,
                keep_states: bool = True) -> Trajectory:
        """Prior rollout (DreamerV3 Sec. 3, "imagination"); see :func:`worldmodels.core.rollout`."""
        return rollout(self, self._prior_step, start, policy_or_actions, horizon, keep_states=keep_states)

    def feature(self, states: State) -> torch.Tensor:
        return self.rssm.feature(states)

    def decode(self, states: State) -> torch.Tensor:
        """Frames ``(..., H, W, C)`` uint8, or vectors ``(..., D)`` float in the env's units."""
        prediction = self.decoder(self.rssm.feature(states))
        return MLPDecoder.to_obs(prediction) if self.vector_obs else to_uint8_image(prediction)

    def predict_reward(self, states: State) -> torch.Tensor:
        return self.reward.mean(self.reward(self.rssm.feature(states)))

    def predict_cont(self, states: State) -> torch.Tensor:
        return self.cont.prob(self.cont(self.rssm.feature(states)))

    def embed(self, obs: torch.Tensor) -> torch.Tensor:
        """uint8 ``(..., H, W, C)`` or float ``(..., D)`` -> ``(..., E)``."""
        return self.encoder(self._encoder_input(obs))

    def _encoder_input(self, obs: torch.Tensor) -> torch.Tensor:
        """Frames -> float ``(..., C, H, W)`` in [-0.5, 0.5]; vectors as they are (the MLP encoder symlogs them)."""
        return obs if self.vector_obs else to_float_image(obs)

    def loss(self, batch: dict[str, torch.Tensor],
             state: State | None = None) -> tuple[dict[str, torch.Tensor], State, dict[str, torch.Tensor]]:
        """Eq. 5 DreamerV3 parts (each a scalar mean over B, T), posteriors ``(B, T, ...)``, metrics."""
        obs = batch["obs"]  # (B, T, H, W, C) uint8 or (B, T, D) float
        B, T = obs.shape[:2]
        target = self._encoder_input(obs)  # (B, T, C, H, W) in [-0.5, 0.5] or (B, T, D); one copy for both
        embed = self.encoder(target)  # (B, T, E)
        post, prior = self.rssm.observe(embed, batch["action"], batch["is_first"], state)
        feat = self.rssm.feature(post)  # (B, T, F)

        recon = self.decoder(feat)  # (B, T, C, H, W) or (B, T, D) in symlog space
        if self.vector_obs:
            rec = MLPDecoder.loss(recon, target)  # (B, T)
        else:
            rec = (recon.float() - target).pow(2).sum((-3, -2, -1))  # (B, T)
        reward_logits = self.reward(feat)  # (B, T, K)
        reward = self.reward.loss(reward_logits, batch["reward"])  # (B, T)
        cont = self.cont.loss(self.cont(feat), 1.0 - batch["terminated"].float())  # (B, T)

        dyn = categorical_kl(post["logits"].detach(), prior["logits"])  # (B, T)
        rep = categorical_kl(post["logits"], prior["logits"].detach())  # (B, T)
        parts = {
            "rec": rec.mean(),
            "reward": reward.mean(),
            "cont": cont.mean(),
            "dyn": torch.clamp(dyn, min=self.free_nats).mean(),
            "rep": torch.clamp(rep, min=self.free_nats).mean(),
        }
        assert tuple(parts) == WORLD_MODEL_LOSSES
        metrics = {"kl": dyn.detach().mean(), "reward_mean": self.reward.mean(reward_logits).detach().mean()}
        return parts, post, metrics
