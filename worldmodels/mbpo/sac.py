"""Soft actor-critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications"): twin Q, automatic
entropy temperature. The model-free learner that MBPO feeds with branched model rollouts.

On a batch of transitions ``obs (N, D), action (N, A), reward (N,), next_obs (N, D), done (N,)``::

    critic   J_Q  = sum_i E[(Q_i(s, a) - y)^2],  y = r + gamma (1 - d) (min_j Qbar_j(s', a') - alpha ln pi(a'|s'))   (eq. 5-6)
    actor    J_pi = E[alpha ln pi(a|s) - min_j Q_j(s, a)],  a ~ pi(.|s) reparameterised                         (eq. 7, 9)
    alpha    J(a) = E[-alpha (ln pi(a|s) + Hbar)],  Hbar = -dim(A)                                                (eq. 18)
    target   Qbar <- (1 - tau) Qbar + tau Q

The actor is the tanh-squashed Gaussian of :class:`worldmodels.models.policy_prior.Prior` (eq. 21's change of
variables), scaled into the Box. :func:`sac_losses` returns the named, unweighted parts; the learner in
``trainers/runs/mbpo.py`` steps one optimiser per part with the project's one learner step (the actor's loss reads
the critic, the critic's target reads the actor: each part's gradient reaches only its own parameters).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from worldmodels.core import PolicyState
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.actor_critic import ema_update
from worldmodels.models.heads import MLP
from worldmodels.models.policy_prior import Prior

SAC_LOSS_PARTS = ("critic", "actor", "alpha")


class TwinQ(nn.Module):
    """Two independent critics ``(obs (N, D), action (N, A)) -> (2, N)`` (clipped double Q, Fujimoto et al. 2018)."""

    def __init__(self, obs_dim: int, action_dim: int, *, hidden: int, layers: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(MLP(obs_dim + action_dim, 1, hidden=hidden, layers=layers) for _ in range(2))

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action], -1)
        return torch.stack([head(x).squeeze(-1) for head in self.heads])


class SAC(nn.Module):
    """Actor, twin critic and its Polyak target, ``log_alpha``; :meth:`update` is ONE SAC step on a batch."""

    def __init__(self, obs_dim: int, action_spec: ActionSpec, *, hidden: int = 256, layers: int = 2,
                 gamma: float = 0.99, tau: float = 0.005, initial_alpha: float = 0.1) -> None:
        super().__init__()
        if action_spec.discrete:
            raise ValueError("SAC here acts in Box action spaces; got a discrete action space")
        self.action_spec, self.gamma, self.tau = action_spec, gamma, tau
        self.sizes = {"obs_dim": obs_dim, "hidden": hidden, "layers": layers}  # what worldmodels.mbpo.family saves
        self.actor = Prior(obs_dim, action_spec, hidden=hidden, layers=layers, log_std_range=(-10.0, 2.0))
        self.critic = TwinQ(obs_dim, action_spec.dim, hidden=hidden, layers=layers)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(float(initial_alpha)).log())
        self.target_entropy = -float(action_spec.dim)

    def parts_parameters(self) -> dict[str, list[nn.Parameter]]:
        """The parameters each loss part of :func:`sac_losses` reaches (one optimiser each, in ``trainers``)."""
        return {"critic": list(self.critic.parameters()), "actor": list(self.actor.parameters()),
                "alpha": [self.log_alpha]}

    @torch.no_grad()
    def update_target(self) -> None:
        """``Qbar <- (1 - tau) Qbar + tau Q``, after each step of the critic."""
        ema_update(self.target_critic, self.critic, 1.0 - self.tau)


def sac_losses(sac: SAC, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The three SAC objectives on ``batch`` (module docstring) as ``()`` tensors, each one reaching only its own
    parameters: the critic's target is computed without gradient, the actor's Q runs on frozen critic weights,
    and alpha's loss reads a detached log-probability."""
    obs, action, reward, next_obs = batch["obs"], batch["action"], batch["reward"], batch["next_obs"]
    done = batch["done"].float()
    N = obs.shape[0]
    assert action.shape == (N, sac.action_spec.dim) and reward.shape == done.shape == (N,), (
        f"sac: obs {tuple(obs.shape)}, action {tuple(action.shape)}, reward {tuple(reward.shape)}")
    alpha = sac.log_alpha.exp().detach()
    with torch.no_grad():
        next_action, next_logp = sac.actor(next_obs)
        next_q = sac.target_critic(next_obs, next_action).min(0).values  # (N,)
        target = reward + sac.gamma * (1 - done) * (next_q - alpha * next_logp)
    critic = (sac.critic(obs, action) - target).pow(2).mean(1).sum()
    new_action, logp = sac.actor(obs)
    q_new = torch.func.functional_call(sac.critic, {k: v.detach() for k, v in sac.critic.named_parameters()},
                                       (obs, new_action)).min(0).values
    actor = (alpha * logp - q_new).mean()
    alpha_loss = -(sac.log_alpha.exp() * (logp.detach() + sac.target_entropy)).mean()
    return {"critic": critic, "actor": actor, "alpha": alpha_loss}


class SACPolicy:
    """The actor as a :class:`~worldmodels.core.Policy` over vector observations and a
    :class:`~worldmodels.core.LatentPolicy` over a vector world model's features (PETS: the observation)."""

    def __init__(self, sac: SAC, *, sample: bool = True) -> None:
        self.sac, self.sample, self.action_spec = sac, sample, sac.action_spec

    def initial(self, batch_size: int) -> PolicyState:
        return None

    @torch.no_grad()
    def act(self, obs: torch.Tensor, is_first: torch.Tensor, state: PolicyState) -> tuple[torch.Tensor, PolicyState]:
        device = self.sac.log_alpha.device
        return self.act_latent(obs.to(device).float()), state

    @torch.no_grad()
    def act_latent(self, feature: torch.Tensor) -> torch.Tensor:
        return self.sac.actor(feature, sample=self.sample)[0]
