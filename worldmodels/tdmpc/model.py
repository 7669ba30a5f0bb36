"""A TD-MPC2-style value-equivalent world model (Hansen, Su & Wang 2024, "TD-MPC2", Sec. 3).

No decoder: the latent is trained only to predict what planning needs (reward, value, continuation) and to
agree with the encoding of the next observation (latent consistency). Components (Sec. 3.1)::

    encoder      z_t = h(s_t)               MLP for vectors (B, D), small conv stack for frames (B, H, W, C) uint8
    dynamics     z_{t+1} = d(z_t, a_t)      both end in SimNorm (Sec. 3.1; Lavoie et al. 2022)
    reward       r_{t+1} = R(z_t, a_t)      two-hot discrete regression in symlog space (as DreamerV3 eq. 10)
    values       q_t^i = Q_i(z_t, a_t)      an ensemble of E heads, two-hot; a target copy held as an EMA
    continue     c_{t+1} = C(z_{t+1})       Bernoulli "not terminal" (episodic tasks)
    prior        a_t ~ p(z_t)               tanh-squashed Gaussian (continuous) or categorical (discrete)

Time alignment of one training window of ``T = H + 1`` replayed rows (DESIGN.md row convention)::

    row:      0          1          2     ...     H
    obs:      s_0        s_1        s_2           s_H            z_0 = h(s_0); targets sg(h(s_t)) for t >= 1
    action:   a_0        a_1        ...   a_{H-1}                z'_{t+1} = d(z'_t, a_t), z'_0 = z_0
    reward:   (unused)   r_1        r_2           r_H            R(z'_t, a_t) predicts r_{t+1}
    valid_t:  transition t -> t+1 lies inside one episode (no is_first in rows 1..t+1)

Model objective (TD-MPC2 Sec. 3.1; the paper's lambda^t weight is ``rho^t`` here), averaged over the H steps::

    L = sum_t rho^t [ c_d ||z'_{t+1} - sg(h(s_{t+1}))||^2 + c_r CE(R(z'_t, a_t), r_{t+1})
                      + c_q (1/E) sum_i CE(Q_i(z'_t, a_t), q_t) + c_c BCE(C(z'_{t+1}), 1 - term_{t+1}) ]
    q_t = r_{t+1} + gamma (1 - term_{t+1}) min_{i in 2 random} Qbar_i(z_{t+1}, p(z_{t+1}))       (TD target, Sec. 3.1)

Prior objective (Sec. 3.1, maximum-entropy): ``sum_t rho^t [alpha * ln p(a|z_t) - Q(z_t, a) / S]`` with ``a ~ p(z_t)``, ``Q`` the mean of two
random online heads, and ``S`` a running 5-95 percentile range of ``Q`` (a scale, not a gradient path).
Losses return named, unweighted parts; the trainer weights them with one ``loss_scales`` dict.
"""

from __future__ import annotations

import copy
from typing import Union

import torch
from torch import nn

from worldmodels.core import LatentPolicy, State, Trajectory, rollout
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.actor_critic import ema_update
from worldmodels.models.conv import ConvEncoder, to_float_image
from worldmodels.models.heads import MLP, ContinueHead, TwoHotHead
from worldmodels.models.policy_prior import Prior

MODEL_LOSS_PARTS = ("consistency", "reward", "value", "cont")


class SimNorm(nn.Module):
    """Simplicial normalisation (Lavoie et al. 2022; TD-MPC2 Sec. 3.1): softmax over groups of ``group`` units.

    ``(..., L) -> (..., L)``; each of the ``L / group`` groups sums to 1, which bounds the latent and keeps the
    consistency loss from collapsing it.
    """

    def __init__(self, group: int = 8) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-1] % self.group == 0, f"SimNorm: width {x.shape[-1]} is not a multiple of group {self.group}"
        groups = x.unflatten(-1, (x.shape[-1] // self.group, self.group))  # (..., L / V, V)
        return groups.softmax(-1).flatten(-2)


class Encoder(nn.Module):
    """``obs (N, D)`` float vectors or ``(N, H, W, C)`` uint8 frames -> SimNorm latent ``(N, L)``."""

    def __init__(self, obs_shape: tuple[int, ...], latent_dim: int, *, hidden: int, layers: int, depth: int,
                 simnorm_group: int) -> None:
        super().__init__()
        self.pixels = len(obs_shape) == 3
        if self.pixels:
            size, channels = obs_shape[0], obs_shape[2]
            self.conv = ConvEncoder(channels, size, depth, stages=4, norm="layer", act="silu")
            self.head = MLP(self.conv.out_dim, latent_dim, hidden=hidden, layers=1)
        elif len(obs_shape) == 1:
            self.head = MLP(obs_shape[0], latent_dim, hidden=hidden, layers=layers)
        else:
            raise ValueError(f"observation shape {obs_shape}: want (D,) vectors or (H, W, C) frames")
        self.norm = SimNorm(simnorm_group)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.conv(to_float_image(obs)) if self.pixels else obs.float()
        return self.norm(self.head(x))


class PriorHead:
    """The prior as a :class:`~worldmodels.core.LatentPolicy` (``act_latent(feature) -> action``): what the
    planner mixes into its candidates, and the policy that acts without a planner."""

    def __init__(self, model: "TDMPCWorldModel", *, sample: bool = True) -> None:
        self.model, self.sample, self.action_spec = model, sample, model.action_spec

    def act_latent(self, feature: torch.Tensor) -> torch.Tensor:
        return self.model.prior(feature, sample=self.sample)[0].detach()


class TDMPCWorldModel(nn.Module):
    """Encoder, latent dynamics, reward / continue / Q-ensemble heads and prior; a :class:`~worldmodels.core.WorldModel`.

    State keys: ``latent (B, L)``, ``action (B, A)``, ``reward (B,)`` and ``cont (B,)`` (predicted on arriving at
    the state; 0 and 1 where the state starts an episode). ``feature(state)`` is the latent itself.
    """

    def __init__(self, obs_shape: tuple[int, ...], action_spec: ActionSpec, *, latent_dim: int = 64, hidden: int = 128,
                 layers: int = 2, depth: int = 8, simnorm_group: int = 8, num_q: int = 5, num_bins: int = 101,
                 value_range: float = 10.0, discount: float = 0.99) -> None:
        super().__init__()
        if num_q < 2:
            raise ValueError(f"num_q must be >= 2 (the TD target takes the min of two heads), got {num_q}")
        self.obs_shape, self.action_spec, self.feature_dim = tuple(obs_shape), action_spec, latent_dim
        self.discount, self.value_range = discount, value_range
        # The integer widths, as worldmodels.tdmpc.family saves them (config.json "sizes") to rebuild the model.
        self.sizes = {"latent_dim": latent_dim, "hidden": hidden, "layers": layers, "depth": depth,
                      "simnorm_group": simnorm_group, "num_q": num_q, "num_bins": num_bins}
        A = action_spec.dim
        head = dict(hidden=hidden, layers=layers, num_bins=num_bins, low=-value_range, high=value_range)
        self.encoder = Encoder(self.obs_shape, latent_dim, hidden=hidden, layers=layers, depth=depth,
                               simnorm_group=simnorm_group)
        self.dynamics = nn.Sequential(MLP(latent_dim + A, latent_dim, hidden=hidden, layers=layers),
                                      SimNorm(simnorm_group))
        self.reward = TwoHotHead(latent_dim + A, **head)
        self.cont = ContinueHead(latent_dim, hidden=hidden, layers=layers)
        self.q = nn.ModuleList(TwoHotHead(latent_dim + A, **head) for _ in range(num_q))
        self.target_q = copy.deepcopy(self.q).requires_grad_(False)
        self.prior = Prior(latent_dim, action_spec, hidden=hidden, layers=layers)

    # ------------------------------------------------------------------ WorldModel protocol

    def initial(self, batch_size: int) -> State:
        device = self.cont.mlp.out.weight.device
        return {"latent": torch.zeros(batch_size, self.feature_dim, device=device),
                "action": torch.zeros(batch_size, self.action_spec.dim, device=device),
                "reward": torch.zeros(batch_size, device=device), "cont": torch.ones(batch_size, device=device)}

    def observe(self, obs: torch.Tensor, action: torch.Tensor | None, is_first: torch.Tensor,
                state: State | None = None) -> tuple[State, State]:
        """``obs (B, T, ...)`` -> ``(states (B, T, ...), last (B, ...))``. Not recurrent: ``latent_t = h(obs_t)``;
        the arrival reward / continue of step t come from ``(latent_{t-1}, action_{t-1})``."""
        B, T = obs.shape[:2]
        latent = self.encoder(obs.flatten(0, 1)).unflatten(0, (B, T))  # (B, T, L)
        previous = state if state is not None else self.initial(B)
        taken = action if action is not None else torch.zeros(B, T, self.action_spec.dim, device=latent.device)
        prev_latent = torch.cat([previous["latent"][:, None], latent[:, :-1]], 1)  # (B, T, L)
        prev_action = torch.cat([previous["action"][:, None], taken[:, :-1]], 1)  # (B, T, A)
        za = torch.cat([prev_latent, prev_action], -1)
        first = is_first.bool().to(latent.device)
        reward = torch.where(first, 0.0, self.reward.mean(self.reward(za)))  # (B, T)
        cont = torch.where(first, 1.0, ContinueHead.prob(self.cont(latent)))  # (B, T)
        states = {"latent": latent, "action": taken, "reward": reward, "cont": cont}
        return states, {key: value[:, -1] for key, value in states.items()}

    def step(self, state: State, action: torch.Tensor) -> tuple[State, torch.Tensor, torch.Tensor]:
        """One latent step ``(state (B, ...), action (B, A)) -> (next state, reward (B,), cont (B,))``."""
        za = torch.cat([state["latent"], action], -1)
        latent = self.dynamics(za)  # (B, L)
        reward = self.reward.mean(self.reward(za))
        cont = ContinueHead.prob(self.cont(latent))
        return {"latent": latent, "action": torch.zeros_like(action), "reward": reward, "cont": cont}, reward, cont

    def imagine(self, start: State, policy_or_actions: Union[LatentPolicy, torch.Tensor], horizon: int, *,
                keep_states: bool = True) -> Trajectory:
        return rollout(self, self.step, start, policy_or_actions, horizon, keep_states=keep_states)

    def feature(self, states: State) -> torch.Tensor:
        return states["latent"]

    decodes = False  # value-equivalent: no frames to show (WorldModel.decode)

    def decode(self, states: State) -> torch.Tensor:
        raise ValueError("TDMPCWorldModel has no decoder (a value-equivalent model predicts reward and value, "
                         "not frames); use a World Models or Dreamer model for frames")

    def predict_reward(self, states: State) -> torch.Tensor:
        return states["reward"]

    def predict_cont(self, states: State) -> torch.Tensor:
        return states["cont"]

    # ------------------------------------------------------------------ values

    def q_values(self, latent: torch.Tensor, action: torch.Tensor, *, target: bool = False) -> torch.Tensor:
        """``(N, L), (N, A) -> (E, N)`` Q of every ensemble head (online or EMA target)."""
        za = torch.cat([latent, action], -1)
        heads = self.target_q if target else self.q
        return torch.stack([head.mean(head(za)) for head in heads])

    def value(self, feature: torch.Tensor) -> torch.Tensor:
        """Terminal value ``V(z) = mean of two random heads of Q(z, mode of p(z))`` -> ``(N,)`` (the planner's bootstrap)."""
        action = self.prior(feature, sample=False)[0]
        return self.q_values(feature, action)[self._two_heads(feature.device)].mean(0)

    def update_target(self, tau: float) -> None:
        """Polyak average ``Qbar <- (1 - tau) Qbar + tau Q`` (TD-MPC2 uses tau = 0.01)."""
        ema_update(self.target_q, self.q, 1.0 - tau)

    def _two_heads(self, device: torch.device) -> torch.Tensor:
        return torch.randperm(len(self.q), device=device)[:2]


def valid_transitions(is_first: torch.Tensor) -> torch.Tensor:
    """``is_first (B, T)`` -> ``(B, T-1)`` float mask: transition t -> t+1 stays inside the window's first episode."""
    return (torch.cumsum(is_first[:, 1:].long(), 1) == 0).float()


def model_loss(model: TDMPCWorldModel, batch: dict[str, torch.Tensor], *, rho: float) -> tuple[dict[str, torch.Tensor],
                                                                                                  torch.Tensor]:
    """The TD-MPC2 model objective on a window ``obs (B, T, ...)``: named unweighted parts, plus the rolled latents ``(B, T-1, L)``
    (detached: the prior loss reads them)."""
    obs, action, reward = batch["obs"], batch["action"], batch["reward"]
    B, T = reward.shape
    H = T - 1
    terminated = batch["terminated"].float()
    valid = valid_transitions(batch["is_first"])  # (B, H)
    weight = rho ** torch.arange(H, dtype=torch.float32, device=reward.device) * valid  # (B, H)
    with torch.no_grad():
        target_latent = model.encoder(obs[:, 1:].flatten(0, 1)).unflatten(0, (B, H))  # (B, H, L) sg(h(s_{t+1}))
        next_action = model.prior(target_latent.flatten(0, 1))[0]
        next_q = model.q_values(target_latent.flatten(0, 1), next_action, target=True)  # (E, B*H)
        next_v = next_q[model._two_heads(reward.device)].min(0).values.unflatten(0, (B, H))
        td_target = reward[:, 1:] + model.discount * (1 - terminated[:, 1:]) * next_v  # (B, H)
    latent = model.encoder(obs[:, 0])  # (B, L)
    rolled, parts = [], {name: [] for name in MODEL_LOSS_PARTS}
    for t in range(H):
        za = torch.cat([latent, action[:, t]], -1)
        rolled.append(latent)
        parts["reward"].append(model.reward.loss(model.reward(za), reward[:, t + 1]))
        parts["value"].append(torch.stack([head.loss(head(za), td_target[:, t]) for head in model.q]).mean(0))
        latent = model.dynamics(za)
        parts["consistency"].append((latent - target_latent[:, t]).pow(2).mean(-1))
        parts["cont"].append(ContinueHead.loss(model.cont(latent), 1 - terminated[:, t + 1]))
    norm = weight.sum().clamp(min=1.0)
    losses = {name: (torch.stack(values, 1) * weight).sum() / norm for name, values in parts.items()}  # (B, H) -> ()
    return losses, torch.stack(rolled, 1).detach()


class RunningScale(nn.Module):
    """EMA of the 5-95 percentile range of Q (as the TD-MPC2 code does), at least 1: the prior loss's Q scale ``S``."""

    def __init__(self, tau: float = 0.01) -> None:
        super().__init__()
        self.tau = tau
        self.register_buffer("value", torch.ones(()))
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def update(self, q: torch.Tensor) -> torch.Tensor:
        q = q.detach().float().flatten()
        spread = (torch.quantile(q, 0.95) - torch.quantile(q, 0.05)).clamp(min=1.0)
        self.value.copy_(torch.where(self.started, torch.lerp(self.value, spread, self.tau), spread))
        self.started.fill_(True)
        return self.value


def prior_loss(model: TDMPCWorldModel, latent: torch.Tensor, scale: RunningScale, *, rho: float, entropy_coef: float,
               valid: torch.Tensor) -> dict[str, torch.Tensor]:
    """The TD-MPC2 prior objective on detached rolled latents ``(B, H, L)`` with ``valid (B, H)`` -> ``{"prior": ()}``.

    Continuous: one reparameterised sample; discrete: the exact expectation over the ``A`` one-hot actions.
    """
    B, H, L = latent.shape
    flat = latent.flatten(0, 1)  # (N, L)
    heads = model._two_heads(latent.device)
    if model.action_spec.discrete:
        A = model.action_spec.dim
        probs = model.prior.probs(flat)  # (N, A)
        every = torch.eye(A, device=latent.device).repeat(flat.shape[0], 1)  # (N*A, A)
        q = model.q_values(flat.repeat_interleave(A, 0), every)[heads].mean(0).unflatten(0, (-1, A))  # (N, A)
        per_row = (probs * (entropy_coef * probs.clamp(min=1e-8).log() - q / scale.update(q))).sum(-1)
    else:
        action, log_prob = model.prior(flat)
        q = model.q_values(flat, action)[heads].mean(0)  # (N,)
        per_row = entropy_coef * log_prob - q / scale.update(q)
    weight = (rho ** torch.arange(H, dtype=torch.float32, device=latent.device) * valid).flatten()
    return {"prior": (per_row * weight).sum() / weight.sum().clamp(min=1.0)}
