"""World Models' V + M as one :class:`worldmodels.core.WorldModel` (Ha & Schmidhuber 2018, Sec. 2-4).

State ``s_t`` (each ``(B, ...)``)::

    z       (B, Z)    V's latent of obs[t] (sampled from q(z|x), or its mean with ``sample_latent=False``)
    h, c    (B, Hd)   M's LSTM state BEFORE reading (z_t, a_t): it has read z_{<t}, a_{<t}
    action  (B, A)    a_t, the action taken at obs[t] (zeros until known)

    feature f_t = [z_t, h_t]                      (the controller's input, Eq. 2)

One prior step (the dream environment, Sec. 4.4)::

    M(z_t, a_t, (h_t, c_t)) -> mixture over z_{t+1}, reward r_{t+1}, done logit d_{t+1}, (h_{t+1}, c_{t+1})
    z_{t+1} ~ mixture at temperature tau        (tau scales BOTH the mixture logits and the Gaussians: mdn_sample)
    cont c_{t+1} = 1 - sigmoid(d_{t+1})

M's heads read ``h_t``, the state after (z_{t-1}, a_{t-1}): so ``predict_reward(s_t)`` is the reward of
arriving at obs[t], the same alignment as the Dreamer family.
"""

from __future__ import annotations

import torch
from torch import nn

from worldmodels.core import LatentPolicy, State, Trajectory, rollout
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.conv import to_float_image, to_uint8_image
from worldmodels.models.mdnrnn import MDNRNN, mdn_sample
from worldmodels.models.vae import ConvVAE


class VMWorldModel(nn.Module):
    """V (a :class:`ConvVAE`) and M (an :class:`MDNRNN`) behind the one world-model protocol.

    ``temperature`` is the dream's tau; ``sample_latent`` picks ``z ~ q(z|x)`` (the paper, and what M
    was trained on) over the posterior mean when filtering real frames. ``generator`` (optional) makes
    imagination reproducible without touching the global RNG.
    """

    def __init__(self, vae: ConvVAE, mdnrnn: MDNRNN, action_spec: ActionSpec, *, temperature: float = 1.0,
                 sample_latent: bool = True) -> None:
        super().__init__()
        if mdnrnn.z_dim != vae.z_dim or mdnrnn.action_dim != action_spec.dim:
            raise ValueError(f"V has z {vae.z_dim}, M reads z {mdnrnn.z_dim} and actions {mdnrnn.action_dim}; "
                             f"the action space has {action_spec.dim}: they must agree")
        self.vae, self.mdnrnn, self.action_spec = vae, mdnrnn, action_spec
        self.obs_shape = (vae.image_size, vae.image_size, vae.in_channels)
        self.feature_dim = vae.z_dim + mdnrnn.hidden_size
        self.temperature, self.sample_latent = float(temperature), sample_latent
        self.generator: torch.Generator | None = None

    def _device(self) -> torch.device:
        return next(self.mdnrnn.parameters()).device

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """uint8 ``(..., H, W, C)`` -> ``z (..., Z)``."""
        mu, logvar = self.vae.encode(to_float_image(obs.to(self._device())))
        if not self.sample_latent:
            return mu
        noise = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=self.generator)
        return mu + (0.5 * logvar).exp() * noise

    # ------------------------------------------------------------------ worldmodels.core.WorldModel

    def initial(self, batch_size: int) -> State:
        device = self._device()
        hidden = torch.zeros(batch_size, self.mdnrnn.hidden_size, device=device)
        return {"z": torch.zeros(batch_size, self.vae.z_dim, device=device), "h": hidden, "c": hidden.clone(),
                "action": torch.zeros(batch_size, self.action_spec.dim, device=device)}

    def observe(self, obs: torch.Tensor, action: torch.Tensor | None, is_first: torch.Tensor,
                state: State | None = None) -> tuple[State, State]:
        """Encode every frame, then run M over ``(z_{t-1}, a_{t-1})``; ``obs (B, T, H, W, C)`` uint8."""
        B, T = obs.shape[:2]
        device = self._device()
        z = self.encode(obs)  # (B, T, Z)
        action = torch.zeros(B, T, self.action_spec.dim, device=device) if action is None else action.to(device).float()
        first = is_first.to(device).bool().clone()  # (B, T)
        if state is None:
            state, first[:, 0] = self.initial(B), True
        prev_z, prev_action, h, c = state["z"], state["action"].float(), state["h"], state["c"]
        hs, cs = [], []
        for t in range(T):  # filtering, not imagination: every input is a real frame
            _, (h_new, c_new) = self.mdnrnn.step(prev_z, prev_action, (h, c))
            keep = (~first[:, t]).to(h_new.dtype).unsqueeze(-1)  # (B, 1): is_first restarts M from zeros
            h, c = h_new * keep, c_new * keep
            hs.append(h)
            cs.append(c)
            prev_z, prev_action = z[:, t], action[:, t]
        states = {"z": z, "h": torch.stack(hs, 1), "c": torch.stack(cs, 1), "action": action}  # (B, T, ...)
        return states, {k: v[:, -1] for k, v in states.items()}

    def _prior_step(self, state: State, action: torch.Tensor) -> tuple[State, torch.Tensor, torch.Tensor]:
        out, (h, c) = self.mdnrnn.step(state["z"], action, (state["h"], state["c"]))
        z = mdn_sample(out["logit_pi"], out["mu"], out["log_sigma"], temperature=self.temperature,
                       generator=self.generator)  # (B, Z)
        cont = 1.0 - torch.sigmoid(out["done_logit"])  # (B,)
        return {"z": z, "h": h, "c": c, "action": torch.zeros_like(action)}, out["reward"], cont

    def imagine(self, start: State, policy_or_actions: LatentPolicy | torch.Tensor, horizon: int, *,
                keep_states: bool = True) -> Trajectory:
        """The dream (Sec. 4.4): M's samples fed back as inputs; see :func:`worldmodels.core.rollout`."""
        return rollout(self, self._prior_step, start, policy_or_actions, horizon, keep_states=keep_states)

    def feature(self, states: State) -> torch.Tensor:
        return torch.cat([states["z"], states["h"]], -1)

    def decode(self, states: State) -> torch.Tensor:
        return to_uint8_image(self.vae.decode(states["z"]))

    def predict_reward(self, states: State) -> torch.Tensor:
        return self.mdnrnn.heads(states["h"])["reward"]

    def predict_cont(self, states: State) -> torch.Tensor:
        return 1.0 - torch.sigmoid(self.mdnrnn.heads(states["h"])["done_logit"])
