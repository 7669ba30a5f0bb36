"""Dreamer on the env's own vector observations (MLP encoder/decoder, symlog loss) learns CartPole-v1 in the real env."""

from __future__ import annotations

import numpy as np

from scripts.dreamer import CONFIG, PRESETS, run
from worldmodels.config import build_config
from worldmodels.data.store import EpisodeStore

# Small widths, B 8 x T 16, replay ratio 32 (4 env steps per update): 1200 agent steps after a 300-step random
# prefill are 300 updates. Learning rates above the paper's, as in the pixel learning tests.
# Measured, seeds 0-3: 127, 120, 64, 85 on a 2-core Intel Xeon; 54.9, 93.6, 203.6, 80.5 on a 2-core AMD EPYC
# (the same seed takes another path on another CPU's floating point); 21-45 s on shared cores.
CARTPOLE = dict(env="CartPole-v1", obs="auto", deter=64, hidden=64, stoch=8, classes=8, layers=1, batch_size=8,
                seq_len=16, replay_ratio=32.0, horizon=10, gamma=0.99, prefill=300, steps=1500, model_lr=1e-3,
                actor_lr=3e-4, critic_lr=3e-4, eval_episodes=10, seed=0, log_every=50)


def test_learns_cartpole_from_vectors_beyond_random(tmp_path):
    result = run(build_config(CONFIG, {"run_dir": str(tmp_path / "cartpole"), **CARTPOLE}, presets=PRESETS,
                              preset="debug"))
    assert result["gradient_steps"] == 300
    store = EpisodeStore.open(tmp_path / "cartpole" / "episodes")
    assert store.spec.obs_shape == (4,) and store.spec.obs_dtype == "float32"  # vectors, not rendered frames
    # Uniform random CartPole-v1 lasts ~22 steps (std ~10 per episode), so a 10-episode mean has std ~3.5 and
    # random play stays below 35 (here 21.9 on these seeds). 45 is > 6 such std above random's mean, and below the
    # worst of the 8 seed x CPU runs above (54.9): 60 failed seed 0 on the EPYC.
    assert np.mean(result["random_returns"]) < 35.0, result
    assert result["eval_return"] >= 45.0, result
