"""Batched latent imagination for Dreamer's actor-critic (DreamerV3, Hafner et al. 2023, Sec. 3).

Every replayed posterior state ``(B, T)`` becomes the start ``s_0`` of one imagined trajectory,
so ``N = B * T`` trajectories of horizon ``H`` are rolled out together, detached from the world
model (DreamerV3 trains the actor with REINFORCE on discrete and continuous actions, so no
gradient flows through the dynamics)::

    s_0 (replayed posterior, sg)
     |  a_0 ~ π(.|s_0)
     v
    s_1 = img_step(s_0, a_0)  ->  a_1 ~ π(.|s_1)  ->  s_2  ...  s_H,  a_H ~ π(.|s_H)

    out["feat"][:, k]   = feature of s_k        k = 0..H      (N, H+1, F)
    out["action"][:, k] = a_k taken at s_k      k = 0..H      (N, H+1, A)   (a_H is never executed)
"""

from __future__ import annotations

import torch
from einops import rearrange

from worldmodels.models.actor_critic import Actor
from worldmodels.models.rssm import RSSM, State


def flatten_start(posterior: State) -> State:
    """Posterior sequence ``(B, T, ...)`` -> detached start states ``(B*T, ...)``."""
    return {k: rearrange(v.detach(), "b t ... -> (b t) ...") for k, v in posterior.items()}


@torch.no_grad()
def imagine(rssm: RSSM, actor: Actor, start: State, horizon: int) -> dict[str, torch.Tensor]:
    """Roll out ``horizon`` prior steps from ``start`` (N, ...) with actions from ``actor``.

    Returns ``feat`` (N, H+1, F), ``action`` (N, H+1, A), ``deter`` (N, H+1, D), ``stoch`` (N, H+1, S, K).
    """
    state = start
    feats, actions, deters, stochs = [], [], [], []
    for k in range(horizon + 1):
        feat = rssm.feature(state)  # (N, F)
        action = actor(feat).sample()  # (N, A)
        feats.append(feat)
        actions.append(action)
        deters.append(state["deter"])
        stochs.append(state["stoch"])
        if k < horizon:
            state = rssm.img_step(state, action)
    return {"feat": torch.stack(feats, 1), "action": torch.stack(actions, 1),
            "deter": torch.stack(deters, 1), "stoch": torch.stack(stochs, 1)}
