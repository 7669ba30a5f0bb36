"""The TD-MPC learner weights the model-loss parts in one place; zero weights leave the model untouched."""

import dataclasses

import pytest
import torch

from trainers.runs.tdmpc import TDMPCLearner, TDMPCRunConfig, build_model, make_env
from worldmodels.envs.spaces import ActionSpec
from worldmodels.tdmpc import MODEL_LOSS_PARTS

SPEC = ActionSpec("continuous", 1, (-1.0,), (1.0,))
SMALL = TDMPCRunConfig(hidden=16, latent_dim=16, num_q=2)


def window(B=4, T=4, D=3):
    g = torch.Generator().manual_seed(0)
    return {"obs": torch.randn(B, T, D, generator=g), "action": torch.rand(B, T, 1, generator=g) * 2 - 1,
            "reward": torch.randn(B, T, generator=g), "terminated": torch.zeros(B, T, dtype=torch.bool),
            "is_first": torch.zeros(B, T, dtype=torch.bool)}


def test_update_reports_every_part_and_moves_the_model():
    torch.manual_seed(0)
    model = build_model(SMALL, (3,), SPEC)
    before = [p.clone() for p in model.dynamics.parameters()]
    parts = TDMPCLearner(model, SMALL).update(window())
    assert set(parts) == {*MODEL_LOSS_PARTS, "prior"} and all(torch.isfinite(torch.tensor(v)) for v in parts.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.dynamics.parameters()))


def test_zero_loss_scales_leave_the_model_unchanged():
    torch.manual_seed(0)
    config = dataclasses.replace(SMALL, consistency_scale=0.0, reward_scale=0.0, value_scale=0.0, cont_scale=0.0)
    model = build_model(config, (3,), SPEC)
    before = {n: p.clone() for n, p in model.named_parameters() if not n.startswith(("prior.", "target_q."))}
    TDMPCLearner(model, config).update(window())
    # Zero weighted loss -> zero gradients -> Adam moves nothing (its step is m / (sqrt(v) + eps) with m = 0).
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters() if n in before)


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown env id"):
        make_env("NoSuchEnv-v9", 1, obs="auto")
    with pytest.raises(ValueError, match="multiple of --simnorm-group"):
        build_model(dataclasses.replace(SMALL, latent_dim=12), (3,), SPEC)
