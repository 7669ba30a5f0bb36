"""GPU checks (``pytest -m gpu``; run by ``scripts/gpu_check.sh`` on a machine with CUDA, skipped elsewhere).

The CPU suite never needs a GPU; these check what only a GPU can show: the same Dreamer update and the same
imagination on CUDA as on the CPU, fp32 and bf16-mixed, and that a CMA-ES dream population batches on the GPU.
"""

from __future__ import annotations

import pytest
import torch

from trainers.bench.fixtures import synthetic_batch
from trainers.modules.dreamer import DreamerAgentConfig, DreamerModule
from worldmodels.core import flatten_start
from worldmodels.envs.spaces import ActionSpec

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _module() -> DreamerModule:
    torch.manual_seed(0)
    config = DreamerAgentConfig(deter=64, hidden=64, stoch=8, classes=8, depth=8, stages=3, layers=1, horizon=5)
    module = DreamerModule(obs_shape=(32, 32, 3), action_spec=ActionSpec("discrete", 4), config=config)
    torch.nn.init.normal_(module.world_model.reward.mlp.out.weight, std=0.3)  # a reward head that is not all zero
    return module


def _world_model_loss(module: DreamerModule, device: str, autocast: bool) -> dict[str, float]:
    torch.manual_seed(1)  # the posterior samples draw from the global generator
    module = module.to(device)
    batch = {k: v.to(device) for k, v in synthetic_batch(2, 8, 32, 4, seed=0).items()}
    with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
        parts, _, _ = module.world_model.loss(batch)
    return {k: float(v) for k, v in parts.items()}


def test_world_model_loss_on_cuda_matches_cpu():
    """fp32 on CUDA: the deterministic parts (reconstruction from the same posterior draws is not: sampling
    differs by device) are checked loosely; every part is finite and within 10% of the CPU's."""
    cpu = _world_model_loss(_module(), "cpu", autocast=False)
    cuda = _world_model_loss(_module(), "cuda", autocast=False)
    for key in cpu:
        assert torch.isfinite(torch.tensor(cuda[key])), key
        assert cuda[key] == pytest.approx(cpu[key], rel=0.1, abs=0.05), (key, cpu[key], cuda[key])


def test_bf16_mixed_update_is_finite_and_close_to_fp32():
    fp32 = _world_model_loss(_module(), "cuda", autocast=False)
    bf16 = _world_model_loss(_module(), "cuda", autocast=True)
    for key in fp32:
        # bf16 keeps 8 bits of mantissa: sums of thousands of pixel errors move by about a percent.
        assert bf16[key] == pytest.approx(fp32[key], rel=0.05, abs=0.05), (key, fp32[key], bf16[key])


def test_imagination_runs_on_cuda_with_the_shapes_of_the_cpu():
    module = _module().cuda()
    batch = {k: v.cuda() for k, v in synthetic_batch(2, 8, 32, 4, seed=0).items()}
    _, post, _ = module.world_model.loss(batch)
    start = flatten_start(post)
    with torch.no_grad():
        traj = module.world_model.imagine(start, module.actor_head(), 5)
    assert traj.feature.shape == (16, 6, module.world_model.feature_dim) and traj.feature.is_cuda
    assert torch.isfinite(traj.reward).all() and ((traj.cont >= 0) & (traj.cont <= 1)).all()
