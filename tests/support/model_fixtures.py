"""Tiny saved models of both families, shared by the pretrained, fine-tuning and export tests."""

from __future__ import annotations

import torch

from worldmodels.controllers.linear import make_controller
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.mdnrnn import MDNRNN
from worldmodels.models.vae import ConvVAE
from worldmodels.pretrained import build, save_dreamer, save_worldmodels

CATCH = ActionSpec("discrete", 3)
DEBUG_AGENT = {"deter": 16, "hidden": 16, "stoch": 4, "classes": 4, "depth": 4, "stages": 2, "layers": 1, "num_bins": 15}


def tiny_worldmodels(directory, spec: ActionSpec = CATCH, *, controller: bool = True):
    torch.manual_seed(0)
    vae, mdnrnn = ConvVAE(3, 16, z_dim=4, depth=4, stages=2), MDNRNN(z_dim=4, action_dim=spec.dim, hidden_size=8, num_mixtures=2)
    c = make_controller("linear", 4 + 8, spec) if controller else None
    params = torch.randn(1, c.num_params) if controller else None
    save_worldmodels(directory, vae, mdnrnn, c, params, env_id="worldmodels/Catch-v0", action_spec=spec,
                     training_steps={"vae_steps": 3}, metrics={"return": 0.5})
    return vae, mdnrnn, params


def dreamer_parts(spec: ActionSpec = CATCH) -> dict[str, torch.nn.Module]:
    return build({"family": "dreamer", "obs_shape": [16, 16, 3], "action_spec": spec.to_dict(), "config": DEBUG_AGENT})


def tiny_dreamer(directory, spec: ActionSpec = CATCH):
    torch.manual_seed(0)
    parts = dreamer_parts(spec)
    save_dreamer(directory, parts, agent_config=DEBUG_AGENT, env_id="worldmodels/Catch-v0",
                 training_steps={"gradient_steps": 2}, metrics={"return": 1.0})
    return parts
