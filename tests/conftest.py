"""Suite-wide settings: one torch thread, toy envs registered, slow and gpu markers declared."""

from __future__ import annotations

import pytest
import torch

from worldmodels.envs.toy import register_toy_envs


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long learning runs")
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (scripts/gpu_check.sh runs them; skipped without one)")
    # On a small CPU (CI: 2 cores) two OpenMP threads per op spin against each other and against
    # the env threads; one thread was measured several times faster for these tiny models.
    torch.set_num_threads(1)
    register_toy_envs()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test starts at one torch thread, whatever a command run by an earlier test set (``--threads``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def seeded():
    torch.manual_seed(0)
    yield
