"""Actor, critic, λ-returns and return normalisation of DreamerV3 (Hafner et al. 2023, Sec. 3).

Imagined trajectory of horizon H (see ``worldmodels/imagination/dreamer.py``)::

    step k:       0        1        2     ...     H
    state:        s_0 ---> s_1 ---> s_2   ...  -> s_H
    action:       a_0      a_1      a_2          a_H (unused)
    reward:                r_1      r_2          r_H      r_k, c_k predicted from s_k
    continue:     c_0      c_1      c_2          c_H      c_0 = 1 - terminated of the replayed start
    value:        v_0      v_1      v_2          v_H      v_H bootstraps the λ-return

    R_k = r_{k+1} + γ c_{k+1} ((1 - λ) v_{k+1} + λ R_{k+1}),  R_H = v_H     (Eq. 7 DreamerV3)
    weight_k = prod_{j<=k} c_j γ^k   (probability the imagined episode is still running at k)

Losses are returned as dicts of named, unweighted parts; the trainer weights them.
"""

from __future__ import annotations

import torch
from torch import nn

from worldmodels.models.distributions import BoundedNormal, OneHotCategorical, unimix_logits
from worldmodels.models.heads import MLP, TwoHotHead


class Actor(nn.Module):
    """``π(a_t | s_t)``: unimix one-hot categorical (discrete) or bounded normal (continuous)."""

    def __init__(self, feat_dim: int, action_dim: int, *, discrete: bool, hidden: int, layers: int,
                 unimix: float = 0.01) -> None:
        super().__init__()
        self.discrete, self.action_dim, self.unimix = discrete, action_dim, unimix
        self.mlp = MLP(feat_dim, action_dim if discrete else 2 * action_dim, hidden=hidden, layers=layers)

    def forward(self, feat: torch.Tensor) -> OneHotCategorical | BoundedNormal:
        """``feat`` (..., F) -> a distribution over ``(..., A)`` model actions."""
        return self.distribution(self.mlp(feat))

    def distribution(self, raw: torch.Tensor) -> OneHotCategorical | BoundedNormal:
        """The MLP's raw output ``(..., A)`` (discrete) or ``(..., 2A)`` (continuous) -> the distribution."""
        if self.discrete:
            return OneHotCategorical(unimix_logits(raw, self.unimix))
        return BoundedNormal(raw)


class ActorRecorder:
    """The actor for imagination under ``no_grad`` that keeps each step's raw output WITH gradient.

    Imagination draws ``a_k ~ π(.|s_k)`` one step at a time; the REINFORCE loss (Eq. 11) needs ``π(.|s_k)``
    at the same states. Keeping the outputs (input detached, so no gradient reaches the world model) lets
    :func:`actor_loss` reuse them instead of running the actor a second time over all ``N x H`` states.
    Call it like the actor (e.g. wrapped in :class:`worldmodels.policies.ActorHead`); sampling reads a
    detached copy, so acting is unchanged.
    """

    def __init__(self, actor: Actor) -> None:
        self.actor = actor
        self.raw: list[torch.Tensor] = []

    def __call__(self, feat: torch.Tensor) -> OneHotCategorical | BoundedNormal:
        with torch.enable_grad():
            raw = self.actor.mlp(feat.detach())  # (N, A or 2A)
        self.raw.append(raw)
        return self.actor.distribution(raw.detach())

    def distribution(self) -> OneHotCategorical | BoundedNormal:
        """``π(.|s_k)`` at the recorded steps ``k = 0..H-1``, over ``(N, H, A)``, with gradient."""
        return self.actor.distribution(torch.stack(self.raw, 1))


class Critic(TwoHotHead):
    """``v_ψ(R | s_t)`` two-hot symexp distribution over λ-returns (Eq. 10 DreamerV3)."""


def lambda_return(reward: torch.Tensor, cont: torch.Tensor, value: torch.Tensor, *, gamma: float,
                  lam: float) -> torch.Tensor:
    """Eq. 7 DreamerV3. ``reward``, ``cont`` (N, H) for steps 1..H; ``value`` (N, H+1) for 0..H -> (N, H) for 0..H-1."""
    N, H = reward.shape
    assert cont.shape == (N, H) and value.shape == (N, H + 1), (
        f"lambda_return: reward {tuple(reward.shape)}, cont {tuple(cont.shape)}, value {tuple(value.shape)}")
    discount = gamma * cont
    returns = [value[:, H]]
    for k in reversed(range(H)):
        returns.append(reward[:, k] + discount[:, k] * ((1.0 - lam) * value[:, k + 1] + lam * returns[-1]))
    return torch.stack(returns[:0:-1], 1)  # (N, H), index k = R_k


class ReturnNormalizer(nn.Module):
    """Scale ``S = EMA(Per(R, 95) - Per(R, 5))``; advantages are divided by ``max(1, S)`` (Eq. 11 DreamerV3).

    Buffers, so the scale is saved in and restored from checkpoints.
    """

    def __init__(self, *, decay: float = 0.99, low: float = 0.05, high: float = 0.95, limit: float = 1.0) -> None:
        super().__init__()
        self.decay, self.low, self.high, self.limit = decay, low, high, limit
        self.register_buffer("low_ema", torch.zeros(()))
        self.register_buffer("high_ema", torch.zeros(()))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def update(self, returns: torch.Tensor) -> None:
        flat = returns.detach().float().flatten()
        quantiles = torch.quantile(flat, torch.tensor([self.low, self.high], device=flat.device))
        if not bool(self.initialised):
            self.low_ema.copy_(quantiles[0])
            self.high_ema.copy_(quantiles[1])
            self.initialised.fill_(True)
        else:
            self.low_ema.lerp_(quantiles[0], 1.0 - self.decay)
            self.high_ema.lerp_(quantiles[1], 1.0 - self.decay)

    def scale(self) -> torch.Tensor:
        return torch.clamp(self.high_ema - self.low_ema, min=self.limit)


def trajectory_weight(cont: torch.Tensor, *, gamma: float) -> torch.Tensor:
    """``cont`` (N, H+1) -> (N, H+1) weights ``prod_{j<=k} c_j γ^k`` (sg'd)."""
    discount = torch.cat([cont[:, :1], gamma * cont[:, 1:]], 1)
    return torch.cumprod(discount, 1).detach()


def actor_loss(dist: OneHotCategorical | BoundedNormal, action: torch.Tensor, returns: torch.Tensor,
               value: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor) -> dict[str, torch.Tensor]:
    """REINFORCE actor loss (Eq. 11 DreamerV3), unweighted parts.

    ``dist``: the actor's ``π(.|s_k)`` at steps 0..H-1 of detached features, with gradient (``actor(feat)``,
    or :meth:`ActorRecorder.distribution` of the imagination that drew the actions); ``action`` (N, H, A);
    ``returns``, ``value``, ``weight`` (N, H).
    ``policy = -sg((R - v) / max(1, S)) ln π(a|s)``; ``entropy = -H[π(.|s)]`` (scaled by η = 3e-4 outside).
    """
    N, H = returns.shape
    log_prob = dist.log_prob(action.detach())  # (N, H)
    assert action.shape[:2] == (N, H) and log_prob.shape == (N, H), (
        f"actor_loss: policy over {tuple(log_prob.shape)}, action {tuple(action.shape)}, returns {(N, H)}")
    advantage = ((returns - value) / scale).detach()  # (N, H)
    entropy = dist.entropy()  # (N, H)
    return {"policy": (-(log_prob * advantage) * weight).mean(), "entropy": (-entropy * weight).mean()}


def critic_loss(critic: Critic, logits: torch.Tensor, returns: torch.Tensor, slow_value: torch.Tensor,
                weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """Two-hot critic loss toward λ-returns, plus the slow-critic regulariser (DreamerV3 Sec. 3), unweighted.

    ``logits`` (N, H, K): the critic at steps 0..H-1 of detached features, WITH gradient (the caller runs the
    critic once and reads its values from the detached logits); ``returns``, ``slow_value``, ``weight`` (N, H).
    """
    return {"value": (critic.loss(logits, returns.detach()) * weight).mean(),
            "value_slow": (critic.loss(logits, slow_value.detach()) * weight).mean()}


@torch.no_grad()
def ema_update(slow: nn.Module, fast: nn.Module, decay: float) -> None:
    """``slow = decay * slow + (1 - decay) * fast`` parameter-wise (slow critic, decay 0.98)."""
    for slow_param, fast_param in zip(slow.parameters(), fast.parameters()):
        slow_param.lerp_(fast_param.detach(), 1.0 - decay)
