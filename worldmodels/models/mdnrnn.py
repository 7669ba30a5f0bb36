"""M: the mixture-density recurrent network of World Models (Ha & Schmidhuber 2018, Sec. 2.2, A.2).

An LSTM reads ``[z_t, a_t]`` and outputs ``P(z_{t+1} | a_t, z_t, h_t)`` as a mixture of ``K``
Gaussians PER latent dimension (diagonal mixture, Eq. 1 with Bishop 1994's MDN), plus a
reward head and an episode-end (termination) logit head (the paper's Doom "done" output).

Time alignment (rows follow DESIGN.md; row ``t`` = ``obs[t], action[t], reward[t], terminated[t]``)::

    input  t:      (z_0, a_0)      (z_1, a_1)      ...   (z_{T-2}, a_{T-2})
                        |               |                       |
    hidden         h_1 (has seen     h_2               ...   h_{T-1}
                   z_0, a_0)
                        v               v                       v
    predicts t+1:  z_1, reward[1],  z_2, reward[2],   ...   z_{T-1}, reward[T-1],
                   terminated[1]    terminated[2]           terminated[T-1]

    Output at input position t is compared with row t+1; it is masked out where row t+1 is
    ``is_first`` (the next row belongs to another episode). ``is_first[t]`` zeroes the LSTM
    state BEFORE reading row t, so no memory leaks across episode boundaries inside a chunk.

The controller sees ``h_t``: the state BEFORE reading ``(z_t, a_t)`` (it has seen ``z_{<t}, a_{<t}``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

LSTMState = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (N, H)


def mdn_log_prob(target: torch.Tensor, logit_pi: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """Exact log-density of a per-dimension Gaussian mixture, summed over dimensions.

    ``log p(z) = sum_d log sum_k pi_dk N(z_d | mu_dk, sigma_dk^2)`` (Bishop 1994, Eq. 22-23),
    computed with log-sum-exp. ``target (..., Z)``; ``logit_pi, mu, log_sigma (..., Z, K)`` -> ``(...,)``.
    """
    assert logit_pi.shape == mu.shape == log_sigma.shape and mu.shape[:-1] == target.shape, (
        f"target {tuple(target.shape)} vs mixture {tuple(logit_pi.shape)} {tuple(mu.shape)} {tuple(log_sigma.shape)}")
    log_pi = F.log_softmax(logit_pi, dim=-1)  # (..., Z, K)
    normalized = (target.unsqueeze(-1) - mu) * torch.exp(-log_sigma)  # (..., Z, K)
    log_normal = -0.5 * normalized.pow(2) - log_sigma - 0.5 * math.log(2 * math.pi)  # (..., Z, K)
    return torch.logsumexp(log_pi + log_normal, dim=-1).sum(-1)  # (...,)


def mdn_sample(logit_pi: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor, *, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample ``z`` from the mixture with temperature ``tau`` (Ha & Schmidhuber 2018, Sec. 4.4 / A.2).

    Mixture logits are divided by ``tau`` and each sigma multiplied by ``sqrt(tau)``; ``tau -> 0``
    gives the most likely component's mean. ``(..., Z, K)`` -> ``(..., Z)``. No host sync.
    """
    tau = max(float(temperature), 1e-6)
    # Gumbel-max draws the component from softmax(logit_pi / tau) without torch.multinomial's host work.
    uniform = torch.rand(logit_pi.shape, device=logit_pi.device, dtype=logit_pi.dtype, generator=generator)
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1.0 - 1e-7)))  # (..., Z, K)
    component = (logit_pi / tau + gumbel).argmax(-1, keepdim=True)  # (..., Z, 1)
    mean = mu.gather(-1, component).squeeze(-1)  # (..., Z)
    sigma = log_sigma.gather(-1, component).squeeze(-1).exp() * math.sqrt(tau)  # (..., Z)
    noise = torch.randn(mean.shape, device=mean.device, dtype=mean.dtype, generator=generator)
    return mean + sigma * noise


class MDNRNN(nn.Module):
    """LSTM over ``[z_t, a_t]`` -> mixture over ``z_{t+1}`` + reward + termination logit."""

    def __init__(self, z_dim: int = 32, action_dim: int = 3, hidden_size: int = 256, num_mixtures: int = 5) -> None:
        super().__init__()
        self.z_dim, self.action_dim = z_dim, action_dim
        self.hidden_size, self.num_mixtures = hidden_size, num_mixtures
        self.lstm = nn.LSTM(z_dim + action_dim, hidden_size, batch_first=True)
        # One linear layer to (logit_pi, mu, log_sigma) for each (dimension, component), then reward and done.
        self.head = nn.Linear(hidden_size, 3 * z_dim * num_mixtures + 2)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> LSTMState:
        zeros = torch.zeros(batch_size, self.hidden_size, device=device)
        return zeros, zeros.clone()

    def heads(self, hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        """Hidden ``(..., H)`` -> mixture ``(..., Z, K)`` x3, ``reward (...)``, ``done_logit (...)``."""
        out = self.head(hidden)  # (..., 3*Z*K + 2)
        mixture, reward, done_logit = out[..., :-2], out[..., -2], out[..., -1]
        logit_pi, mu, log_sigma = rearrange(mixture, "... (p z k) -> p ... z k", p=3, z=self.z_dim)
        return {"logit_pi": logit_pi, "mu": mu, "log_sigma": log_sigma.clamp(-7.0, 5.0),
                "reward": reward, "done_logit": done_logit}

    def forward(self, z: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor | None = None,
                state: LSTMState | None = None) -> tuple[dict[str, torch.Tensor], LSTMState]:
        """Sequences ``z (B, T, Z)``, ``action (B, T, A)``, ``is_first (B, T)`` -> predictions for row t+1.

        The state is zeroed before every row with ``is_first``. The sequence is cut into segments
        at the time steps where any row resets, and each segment is one cuDNN/MKL LSTM call.
        Returns outputs ``(B, T, ...)`` (including ``hidden (B, T, H)``, the state AFTER row t) and the final state.
        """
        B, T, _ = z.shape
        assert action.shape[:2] == (B, T), f"z {tuple(z.shape)} vs action {tuple(action.shape)}"
        inputs = torch.cat([z, action], dim=-1)  # (B, T, Z + A)
        h, c = state if state is not None else self.initial_state(B, z.device)  # (B, H) each
        if is_first is None:
            is_first = torch.zeros(B, T, dtype=torch.bool, device=z.device)
        # Host sync once per sequence (not per step): which columns need a reset.
        cuts = sorted(set([0] + torch.nonzero(is_first.any(0)).flatten().tolist() + [T]))
        outputs = []
        for start, stop in zip(cuts[:-1], cuts[1:]):
            keep = (~is_first[:, start]).to(h.dtype).unsqueeze(-1)  # (B, 1)
            h, c = h * keep, c * keep
            out, (h1, c1) = self.lstm(inputs[:, start:stop], (h.unsqueeze(0), c.unsqueeze(0)))  # (B, t, H)
            h, c = h1.squeeze(0), c1.squeeze(0)
            outputs.append(out)
        hidden = torch.cat(outputs, dim=1)  # (B, T, H)
        return {**self.heads(hidden), "hidden": hidden}, (h, c)

    def step(self, z: torch.Tensor, action: torch.Tensor, state: LSTMState) -> tuple[dict[str, torch.Tensor], LSTMState]:
        """One step for ``N`` rows: ``z (N, Z)``, ``action (N, A)`` -> predictions for the next row, new state."""
        inputs = torch.cat([z, action], dim=-1).unsqueeze(1)  # (N, 1, Z + A)
        h, c = state
        out, (h1, c1) = self.lstm(inputs, (h.unsqueeze(0), c.unsqueeze(0)))  # (N, 1, H)
        hidden = out.squeeze(1)  # (N, H)
        return {**self.heads(hidden), "hidden": hidden}, (h1.squeeze(0), c1.squeeze(0))

    def loss(self, z: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, terminated: torch.Tensor,
             is_first: torch.Tensor, *, done_pos_weight: float = 1.0) -> dict[str, torch.Tensor]:
        """Unweighted parts over a ``(B, T)`` chunk, each averaged over valid (t -> t+1) pairs.

        ``nll``: ``-log P(z_{t+1})`` per latent dimension (Eq. 1; divided by ``Z`` so its scale does not
        depend on the latent size). ``reward``: squared error of ``reward[t+1]``. ``done``: binary
        cross-entropy of ``terminated[t+1]`` with the (rare) positive rows weighted ``done_pos_weight``
        (the reference Doom code's ``restart_factor``). Targets: :func:`next_row_targets`.
        """
        B, T, Z = z.shape
        out, _ = self(z, action, is_first)
        target = next_row_targets(reward, terminated, is_first)  # (B, T-1) each
        valid = target["valid"]
        count = valid.sum().clamp(min=1.0)
        pick = lambda x: x[:, :-1]  # noqa: E731 - outputs at t predict row t+1
        log_prob = mdn_log_prob(z[:, 1:], pick(out["logit_pi"]), pick(out["mu"]), pick(out["log_sigma"]))  # (B, T-1)
        nll = -(log_prob * valid).sum() / count / Z
        reward_err = (pick(out["reward"]) - target["reward"]).pow(2)  # (B, T-1)
        done_bce = F.binary_cross_entropy_with_logits(pick(out["done_logit"]), target["done"], reduction="none",
                                                      pos_weight=torch.tensor(float(done_pos_weight), device=z.device))
        return {"nll": nll, "reward": (reward_err * valid).sum() / count, "done": (done_bce * valid).sum() / count}


def next_row_targets(reward: torch.Tensor, terminated: torch.Tensor, is_first: torch.Tensor) -> dict[str, torch.Tensor]:
    """What M's output at input position ``t`` is trained towards: row ``t+1`` (module diagram). ``(B, T)`` -> ``(B, T-1)``.

    ``valid[t]``: row t+1 continues row t's episode (pairs that cross into a new episode are masked).
    ``done[t] = terminated[t+1]``: the transition INTO the terminal row is the one labelled, so a dying
    episode's last row is a positive target exactly once (at the pair L-2 -> L-1); ``reward[t] = reward[t+1]``.
    """
    return {"valid": (~is_first[:, 1:].bool()).float(), "done": terminated[:, 1:].float(), "reward": reward[:, 1:].float()}
