"""The published World Models reproduction pitfalls, each made impossible and pinned by a test.

1. Done labels off by one: M's done target for the transition t -> t+1 is ``terminated[t+1]``, so a dying
   episode's last row is a positive exactly once, a time-limit cut never is, and no pair crosses episodes.
2. Rare deaths not up-weighted: ``done_pos_weight`` (reference Doom code: ``restart_factor`` 10) scales the
   done BCE on positive labels only.
3. The mean latent where a sample is needed: M trains on ``z ~ N(mu, sigma)`` drawn per batch from the cached
   statistics, dreams start from a sampled ``z``, and the real-env controller sees a sampled ``z`` too.

Two more are pinned in ``tests/unit/worldmodels/test_core_rollout.py`` and not repeated here: temperature
scales both the mixture weights and the Gaussians (``test_temperature_scales_mixture_weights_and_sigma``) and
the dream ends on M's predicted death (``test_cmaes_dream_ends_on_predicted_death``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from trainers.data.latents import LatentChunkDataset, encode_store, load_latents
from trainers.modules.mdnrnn import MDNRNNModule
from trainers.runs.worldmodels_config import PRESETS, WorldModelsConfig
from trainers.runs.worldmodels_stages import mdnrnn_module
from worldmodels.controllers.linear import LinearController
from worldmodels.data.store import EpisodeStore
from worldmodels.envs.spaces import ActionSpec
from worldmodels.imagination.cmaes_dream import dream_rollout
from worldmodels.models.mdnrnn import MDNRNN, next_row_targets
from worldmodels.models.vae import ConvVAE
from worldmodels.models.vm_world_model import VMWorldModel

SPEC = ActionSpec("discrete", 3)


def _hand_built_store(root) -> EpisodeStore:
    """Three episodes end to end: A dies (5 rows), B is cut by the time limit (4 rows), C dies (6 rows)."""
    store = EpisodeStore.create(root, env_id="hand-built", obs_shape=(16, 16, 3), action_spec=SPEC)
    rng = np.random.default_rng(0)
    for length, died in ((5, True), (4, False), (6, True)):
        end = np.zeros(length, bool)
        end[-1] = True
        reward = np.ones(length, np.float32)
        reward[0] = 0.0  # row convention: reward of ARRIVING at obs[t]; row 0 has none
        store.add_episode(rng.integers(0, 256, (length, 16, 16, 3), dtype=np.uint8), rng.integers(0, 3, length),
                          reward, terminated=end & died, truncated=end & (not died))
    return store


def test_done_target_is_the_next_rows_terminated_through_the_latent_cache(tmp_path):
    """Store -> V's latent cache -> M's windows -> M's targets and loss: positives exactly at A's and C's deaths."""
    torch.manual_seed(0)
    store = _hand_built_store(tmp_path / "episodes")
    vae = ConvVAE(image_size=16, z_dim=4, depth=4, stages=2)
    encode_store(vae, store.root, tmp_path / "latents")
    episodes = load_latents(tmp_path / "latents")
    assert [int(e["terminated"].sum()) for e in episodes] == [1, 0, 1]  # the cache keeps the flags row by row
    window = LatentChunkDataset(episodes, seq_len=15, stride=15)[0]  # (15, ...): A rows 0-4, B 5-8, C 9-14
    batch = {key: value.unsqueeze(0) for key, value in window.items()}  # (1, 15, ...)
    assert torch.nonzero(batch["is_first"][0]).flatten().tolist() == [0, 5, 9]

    target = next_row_targets(batch["reward"], batch["terminated"], batch["is_first"])  # (1, 14) each
    # Pair t -> t+1 is labelled terminated[t+1]: A's death is the pair 3 -> 4, C's the pair 13 -> 14. B's last
    # row (8) is a time-limit cut, not a death. Pairs 4 -> 5 and 8 -> 9 cross into a new episode and are masked.
    assert torch.nonzero(target["done"][0] * target["valid"][0]).flatten().tolist() == [3, 13]
    assert torch.nonzero(target["valid"][0] == 0).flatten().tolist() == [4, 8]
    assert target["reward"][0, 4].item() == 0.0 and target["reward"][0, 3].item() == 1.0  # row 5 starts B: no reward

    # The loss uses exactly these targets: recompute its done part by hand from the positions above.
    model = MDNRNN(z_dim=4, action_dim=3, hidden_size=8, num_mixtures=2)
    parts = model.loss(batch["mu"], batch["action"], batch["reward"], batch["terminated"], batch["is_first"],
                       done_pos_weight=10.0)
    logits = model(batch["mu"], batch["action"], batch["is_first"])[0]["done_logit"][0, :-1]  # (14,)
    labels = torch.zeros(14)
    labels[[3, 13]] = 1.0
    keep = torch.ones(14, dtype=torch.bool)
    keep[[4, 8]] = False
    weights = torch.where(labels > 0, 10.0, 1.0)
    expected = (weights * F.binary_cross_entropy_with_logits(logits, labels, reduction="none"))[keep].mean()
    assert torch.allclose(parts["done"], expected, atol=1e-6), (parts["done"].item(), expected.item())


def test_done_pos_weight_changes_the_loss_only_on_positive_labels():
    torch.manual_seed(0)
    model = MDNRNN(z_dim=4, action_dim=2, hidden_size=16, num_mixtures=3)
    B, T = 3, 10
    z, action, reward = torch.randn(B, T, 4), torch.randn(B, T, 2), torch.randn(B, T)
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True
    none_die = torch.zeros(B, T, dtype=torch.bool)
    plain, weighted = (model.loss(z, action, reward, none_die, is_first, done_pos_weight=w) for w in (1.0, 10.0))
    assert all(torch.equal(plain[k], weighted[k]) for k in plain)  # no positive label: nothing changes

    some_die = none_die.clone()
    some_die[0, 6] = some_die[2, 9] = True  # targets of the pairs (0, 5 -> 6) and (2, 8 -> 9)
    plain, weighted = (model.loss(z, action, reward, some_die, is_first, done_pos_weight=w) for w in (1.0, 10.0))
    assert torch.equal(plain["nll"], weighted["nll"]) and torch.equal(plain["reward"], weighted["reward"])
    # Only the positive terms are scaled: weighted - plain = (w - 1) * sum_positive(-log sigmoid(logit)) / count.
    logits = model(z, action, is_first)[0]["done_logit"]  # (B, T)
    positive = -F.logsigmoid(logits[0, 5]) - F.logsigmoid(logits[2, 8])
    count = B * (T - 1)
    assert torch.allclose(weighted["done"] - plain["done"], 9.0 * positive / count, atol=1e-6)


def test_the_run_config_reaches_m_with_a_death_weight_above_one():
    """Every preset trains M with an up-weighted done loss (the default 10), and the stage passes it on."""
    config = WorldModelsConfig()
    assert config.done_pos_weight == 10.0
    assert all(preset.get("done_pos_weight", config.done_pos_weight) > 1.0 for preset in PRESETS.values())
    assert mdnrnn_module(WorldModelsConfig(done_pos_weight=3.5), action_dim=3).done_pos_weight == 3.5


def test_m_trains_on_z_sampled_from_the_cached_statistics_per_batch():
    torch.manual_seed(0)
    module = MDNRNNModule(z_dim=4, action_dim=2, hidden_size=8, num_mixtures=2)
    seen = []
    original = module.mdnrnn.loss

    def spy(z, *args, **kwargs):
        seen.append(z.detach().clone())
        return original(z, *args, **kwargs)

    module.mdnrnn.loss = spy
    module.log = lambda *args, **kwargs: None  # no Trainer attached
    B, T = 8, 50
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True
    batch = {"mu": torch.randn(B, T, 4), "logvar": torch.full((B, T, 4), math.log(4.0)), "action": torch.randn(B, T, 2),
             "reward": torch.zeros(B, T), "terminated": torch.zeros(B, T, dtype=torch.bool), "is_first": is_first}
    module.training_step(batch, 0)
    module.training_step(batch, 1)
    first, second = seen
    # z = mu + sigma * eps with sigma = 2: the offsets from the mean have std ~2 (1,600 draws: +-0.1 is > 5 s.e.),
    # and the next batch draws afresh.
    assert abs((first - batch["mu"]).std().item() - 2.0) < 0.1
    assert not torch.allclose(first, second)


def test_dreams_start_from_a_sampled_z_and_the_real_env_controller_sees_one():
    torch.manual_seed(0)
    vae, mdnrnn = ConvVAE(image_size=16, z_dim=4, depth=4, stages=2), MDNRNN(z_dim=4, action_dim=3, hidden_size=8)
    world_model = VMWorldModel(vae, mdnrnn, SPEC, temperature=1.0)
    starts = []
    original = world_model.imagine
    world_model.imagine = lambda start, *args, **kwargs: starts.append(start["z"].clone()) or original(start, *args, **kwargs)
    controller = LinearController(4 + 8, SPEC)
    start_mu = torch.randn(1, 4)  # one real start frame: every row starts from it
    dream_rollout(world_model, controller, torch.zeros(25, controller.num_params), start_mu,
                  torch.full((1, 4), math.log(9.0)), repeats=40, horizon=2)
    offsets = starts[0] - start_mu  # (1000, 4): sigma = 3
    assert abs(offsets.std().item() - 3.0) < 0.15  # 4,000 draws: s.e. of the std ~0.03

    frames = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8)
    assert world_model.sample_latent  # the default: C acts on a z drawn like the ones M was trained on
    assert not torch.allclose(world_model.encode(frames), world_model.encode(frames))
