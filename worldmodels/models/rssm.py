"""Recurrent State-Space Model of DreamerV3 (Hafner et al. 2023, Eq. 3 and Sec. B).

    sequence model     h_t = f(h_{t-1}, z_{t-1}, a_{t-1})        LayerNorm GRU, ``deter`` units
    encoder/posterior  z_t ~ q(z_t | h_t, x_t)                   32 categoricals x 32 classes
    dynamics/prior     ẑ_t ~ p(ẑ_t | h_t)

The stochastic state is ``stoch`` one-hot categoricals of ``classes`` classes, sampled with
straight-through gradients from probabilities mixed with 1% uniform (DreamerV3 Sec. "Robust
predictors"). The model feature is ``concat(h_t, flatten(z_t))``.

Time alignment (store row convention, DESIGN.md)::

    row t:        obs[t]          action[t] (taken at obs[t], leads to obs[t+1])
    RSSM step t:  h_t = GRU(h_{t-1}, z_{t-1}, prev_action_t)   with prev_action_t = action[t-1]
                  z_t ~ q(. | h_t, embed(obs[t]))

        obs[0]      obs[1]      obs[2]
          |           |           |
    h_0 --+--> h_1 ---+--> h_2 ---+-->
      z_0  ^     z_1  ^     z_2
           |          |
       action[0]  action[1]          (action[T-1] of a chunk is not consumed by the chunk)

    is_first[t] = True:  (h_{t-1}, z_{t-1}) := initial state, prev_action_t := 0,
    so the posterior at t does not depend on anything before t.

States are dicts of tensors: ``deter (B, D)``, ``stoch (B, S, K)`` one-hot, ``logits (B, S, K)``
(the unimixed logits z was drawn from); sequences carry an extra time axis ``(B, T, ...)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from worldmodels.models.distributions import OneHotCategorical, unimix_logits

State = dict[str, torch.Tensor]


class LayerNormGRUCell(nn.Module):
    """GRU cell with one joint Linear + LayerNorm over ``concat(x, h)`` (DreamerV3's GRU).

    ``update = sigmoid(u - 1)`` biases the cell to keep its state early in training. The gates are
    fused into few kernels: ``h' = lerp(h, tanh(sigmoid(r) * c), update)`` (= ``u c + (1 - u) h``).
    """

    def __init__(self, input_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(input_dim + hidden_dim, 3 * hidden_dim, bias=False)
        self.norm = nn.LayerNorm(3 * hidden_dim)
        self.hidden_dim = hidden_dim

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        parts = self.norm(self.linear(torch.cat([x, h], -1)))  # (B, 3D)
        reset, cand, update = parts.chunk(3, -1)
        cand = torch.tanh(torch.sigmoid(reset) * cand)
        # CPU bf16 autocast returns LayerNorm in bf16 while the carry stays fp32; lerp wants one dtype.
        return torch.lerp(h, cand.to(h.dtype), torch.sigmoid(update - 1.0).to(h.dtype))


def _dense(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim, bias=False), nn.LayerNorm(out_dim), nn.SiLU())


class RSSM(nn.Module):
    """RSSM with a LayerNorm GRU and ``stoch x classes`` straight-through categorical latents.

    Two first Linears act on concatenations of a recurrent and a non-recurrent input:
    ``img_in`` on ``concat(z_{t-1}, a_{t-1})`` and ``obs_out`` on ``concat(h_t, embed_t)``. Their weights
    stay one tensor each (checkpoint keys unchanged) but are applied as two column blocks, so
    :meth:`observe` projects all T actions and embeddings in one batched matmul before its time loop
    and only the recurrent halves run per step. The prior head ``img_out`` is not on the filtering
    recursion (z_t comes from the posterior), so :meth:`observe` applies it once to all T states.
    """

    def __init__(self, *, embed_dim: int, action_dim: int, deter: int = 512, hidden: int = 512, stoch: int = 32,
                 classes: int = 32, unimix: float = 0.01) -> None:
        super().__init__()
        self.deter_dim, self.stoch_dim, self.classes, self.unimix = deter, stoch, classes, unimix
        self.action_dim, self.embed_dim = action_dim, embed_dim
        self.img_in = _dense(stoch * classes + action_dim, hidden)
        self.gru = LayerNormGRUCell(hidden, deter)
        self.img_out = nn.Sequential(_dense(deter, hidden), nn.Linear(hidden, stoch * classes))
        self.obs_out = nn.Sequential(_dense(deter + embed_dim, hidden), nn.Linear(hidden, stoch * classes))
        self.initial_deter = nn.Parameter(torch.zeros(deter))  # learned initial h (DreamerV3 initial="learned")

    @property
    def feat_dim(self) -> int:
        return self.deter_dim + self.stoch_dim * self.classes

    # ------------------------------------------------------------------ state helpers

    def initial(self, batch_size: int) -> State:
        """The learned initial state: ``h = tanh(w)``, ``z`` = the prior's mode at ``h``."""
        deter = torch.tanh(self.initial_deter).expand(batch_size, -1)  # (B, D)
        logits = self._logits(self.img_out(deter))  # (B, S, K)
        stoch = OneHotCategorical(logits).mode()
        return {"deter": deter, "stoch": stoch, "logits": logits}

    def feature(self, state: State) -> torch.Tensor:
        """``(..., D + S*K)`` model feature ``concat(h, flatten(z))``."""
        stoch = state["stoch"]
        return torch.cat([state["deter"], stoch.reshape(*stoch.shape[:-2], -1).to(state["deter"].dtype)], -1)

    def _logits(self, flat: torch.Tensor) -> torch.Tensor:
        logits = flat.reshape(*flat.shape[:-1], self.stoch_dim, self.classes)
        return unimix_logits(logits, self.unimix)

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        return OneHotCategorical(logits).sample()

    # ------------------------------------------------------------------ the two halves of the concat Linears

    def _action_part(self, action: torch.Tensor) -> torch.Tensor:
        """``(..., A)`` -> ``(..., H)``: the action columns of ``img_in``'s Linear."""
        return F.linear(action, self.img_in[0].weight[:, self.stoch_dim * self.classes:])

    def _embed_part(self, embed: torch.Tensor) -> torch.Tensor:
        """``(..., E)`` -> ``(..., H)``: the embedding columns of ``obs_out``'s first Linear."""
        return F.linear(embed, self.obs_out[0][0].weight[:, self.deter_dim:])

    def _recurrent_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The recurrent column blocks: ``img_in``'s stoch columns (H, S*K), ``obs_out``'s deter columns (H, D).

        Views, taken once per sequence: slicing inside the time loop would make autograd build a zero-filled
        gradient of the whole weight per step and slice (``obs_out``'s is H x (D + E), 9 MB at S-v1).
        """
        return self.img_in[0].weight[:, :self.stoch_dim * self.classes], self.obs_out[0][0].weight[:, :self.deter_dim]

    def _recurrent(self, state: State, action_part: torch.Tensor, stoch_weight: torch.Tensor) -> torch.Tensor:
        """``h_t = f(h_{t-1}, z_{t-1}, a_{t-1})`` given ``action_part = _action_part(a_{t-1})`` (B, H) -> (B, D).

        ``stoch_weight``: the first block of :meth:`_recurrent_weights`.
        """
        stoch = state["stoch"].reshape(state["stoch"].shape[0], -1)  # (B, S*K)
        _, norm, act = self.img_in
        x = act(norm(F.linear(stoch, stoch_weight) + action_part))  # (B, H)
        return self.gru(x, state["deter"])

    def _posterior_logits(self, deter: torch.Tensor, embed_part: torch.Tensor,
                          deter_weight: torch.Tensor) -> torch.Tensor:
        """``q(z_t | h_t, x_t)`` logits (B, S, K) given ``embed_part = _embed_part(embed_t)`` (B, H).

        ``deter_weight``: the second block of :meth:`_recurrent_weights`.
        """
        (_, norm, act), out = self.obs_out
        return self._logits(out(act(norm(F.linear(deter, deter_weight) + embed_part))))

    # ------------------------------------------------------------------ single steps

    def img_step(self, state: State, prev_action: torch.Tensor) -> State:
        """Prior step ``h_t = f(h_{t-1}, z_{t-1}, a_{t-1})``, ``ẑ_t ~ p(. | h_t)``. ``prev_action`` (B, A)."""
        deter = self._recurrent(state, self._action_part(prev_action.to(state["deter"].dtype)),
                                self._recurrent_weights()[0])  # (B, D)
        logits = self._logits(self.img_out(deter))  # (B, S, K)
        return {"deter": deter, "stoch": self._sample(logits), "logits": logits}

    def reset(self, state: State, prev_action: torch.Tensor, is_first: torch.Tensor) -> tuple[State, torch.Tensor]:
        """Replace the state by the initial state and ``prev_action`` by zeros where ``is_first`` (B,)."""
        keep = (~is_first.bool()).to(prev_action.dtype)  # (B,)
        return self._reset_state(state, is_first, self.initial(prev_action.shape[0])), prev_action * keep.unsqueeze(-1)

    @staticmethod
    def _reset_state(state: State, is_first: torch.Tensor, init: State) -> State:
        first = is_first.bool()
        return {k: torch.where(first.view(-1, *([1] * (v.dim() - 1))), init[k].to(v.dtype), v)
                for k, v in state.items()}

    def obs_step(self, state: State, prev_action: torch.Tensor, embed: torch.Tensor,
                 is_first: torch.Tensor) -> tuple[State, State]:
        """One filtering step -> ``(posterior, prior)`` at t. ``embed`` (B, E) of obs[t], ``is_first`` (B,)."""
        state, prev_action = self.reset(state, prev_action, is_first)
        prior = self.img_step(state, prev_action)
        logits = self._posterior_logits(prior["deter"], self._embed_part(embed.to(prior["deter"].dtype)),
                                        self._recurrent_weights()[1])
        post = {"deter": prior["deter"], "stoch": self._sample(logits), "logits": logits}
        return post, prior

    # ------------------------------------------------------------------ sequences

    def observe(self, embed: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor,
                state: State | None = None, prev_action: torch.Tensor | None = None) -> tuple[State, State]:
        """Filter a chunk -> ``(posteriors, priors)``, each ``(B, T, ...)``; T :meth:`obs_step` calls, batched.

        ``embed`` (B, T, E) of obs[t]; ``action`` (B, T, A) in row convention (action[t] taken at
        obs[t]); ``is_first`` (B, T). Step t consumes ``action[t-1]`` (``prev_action`` at t = 0,
        zeros if not given) -- see the module diagram.
        """
        B, T = embed.shape[:2]
        assert action.shape[:2] == (B, T) and is_first.shape == (B, T), (
            f"observe: embed {tuple(embed.shape)}, action {tuple(action.shape)}, is_first {tuple(is_first.shape)}")
        dtype = self.initial_deter.dtype
        init = self.initial(B)
        state = init if state is None else state
        if prev_action is None:
            prev_action = torch.zeros(B, self.action_dim, device=embed.device, dtype=dtype)
        prev_actions = torch.cat([prev_action.unsqueeze(1).to(dtype), action[:, :-1].to(dtype)], 1)  # (B, T, A)
        is_first = is_first.bool()
        # Everything off the recursion, for all T at once: the reset's zeroed prev_action, the action
        # and embedding halves of the concat Linears.
        action_part = self._action_part(prev_actions * (~is_first).unsqueeze(-1).to(dtype))  # (B, T, H)
        embed_part = self._embed_part(embed.to(dtype))  # (B, T, H)
        resets = is_first.any(0).tolist()  # one host read, not one per step
        stoch_weight, deter_weight = self._recurrent_weights()
        # Unbound once: indexing [:, t] per step would give each step's gradient its own zero-filled (B, T, H).
        action_parts, embed_parts = action_part.unbind(1), embed_part.unbind(1)  # T x (B, H)
        deters, stochs, logits = [], [], []
        for t in range(T):
            if resets[t]:
                state = self._reset_state(state, is_first[:, t], init)
            deter = self._recurrent(state, action_parts[t], stoch_weight)  # (B, D)
            post_logits = self._posterior_logits(deter, embed_parts[t], deter_weight)  # (B, S, K)
            state = {"deter": deter, "stoch": self._sample(post_logits), "logits": post_logits}
            deters.append(deter)
            stochs.append(state["stoch"])
            logits.append(post_logits)
        deter = torch.stack(deters, 1)  # (B, T, D)
        prior_logits = self._logits(self.img_out(deter))  # (B, T, S, K)
        post = {"deter": deter, "stoch": torch.stack(stochs, 1), "logits": torch.stack(logits, 1)}
        return post, {"deter": deter, "stoch": self._sample(prior_logits), "logits": prior_logits}

