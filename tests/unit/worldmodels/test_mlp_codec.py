"""MLP encoder/decoder for vector observations, and DreamerWorldModel picking them for ``(D,)`` observations."""

from __future__ import annotations

import pytest
import torch

import worldmodels
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.conv import ConvEncoder
from worldmodels.models.distributions import symlog
from worldmodels.models.mlp_codec import MLPDecoder, MLPEncoder
from worldmodels.models.world_model import WORLD_MODEL_LOSSES, DreamerWorldModel
from worldmodels.pretrained import build, save_dreamer

B, T, D, F = 3, 5, 4, 12
SPEC = ActionSpec("discrete", 2)
AGENT = {"deter": 16, "hidden": 16, "stoch": 4, "classes": 4, "depth": 4, "stages": 2, "layers": 2, "num_bins": 15}


def vector_model() -> DreamerWorldModel:
    torch.manual_seed(0)
    return DreamerWorldModel(obs_shape=(D,), action_spec=SPEC, **AGENT)


def chunk() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True
    return {"obs": torch.randn(B, T, D) * 50.0,  # large magnitudes: symlog keeps the loss in range
            "action": torch.nn.functional.one_hot(torch.randint(0, 2, (B, T)), 2).float(),
            "reward": torch.ones(B, T), "terminated": torch.zeros(B, T, dtype=torch.bool), "is_first": is_first}


def test_mlp_encoder_and_decoder_shapes():
    encoder, decoder = MLPEncoder(D, hidden=8, layers=2), MLPDecoder(F, D, hidden=8, layers=2)
    assert encoder(torch.randn(B, T, D)).shape == (B, T, 8) and encoder.out_dim == 8
    prediction = decoder(torch.randn(B, T, F))
    assert prediction.shape == (B, T, D)
    assert MLPDecoder.loss(prediction, torch.randn(B, T, D)).shape == (B, T)
    with pytest.raises(ValueError, match=r"expects vectors \(\.\.\., 4\), got \(3, 5, 6\)"):
        encoder(torch.randn(B, T, D + 2))


def test_symlog_loss_is_zero_at_the_target_and_decoding_inverts_it():
    obs = torch.tensor([[-1000.0, -1.0, 0.0, 3.0]])
    assert MLPDecoder.loss(symlog(obs), obs).item() == 0.0  # Eq. 8: the target is symlog(x)
    torch.testing.assert_close(MLPDecoder.to_obs(symlog(obs)), obs)
    # One unit off in symlog space everywhere costs D, whatever the scale of x.
    assert MLPDecoder.loss(symlog(obs) + 1.0, obs).item() == pytest.approx(D)


def test_world_model_picks_the_codec_from_the_observation_shape():
    assert isinstance(vector_model().encoder, MLPEncoder) and isinstance(vector_model().decoder, MLPDecoder)
    frames = DreamerWorldModel(obs_shape=(16, 16, 3), action_spec=SPEC, **AGENT)
    assert isinstance(frames.encoder, ConvEncoder) and not frames.vector_obs
    with pytest.raises(ValueError, match="neither"):
        DreamerWorldModel(obs_shape=(4, 4), action_spec=SPEC, **AGENT)


def test_vector_world_model_observe_decode_and_loss_contract():
    model, batch = vector_model(), chunk()
    states, last = model.observe(batch["obs"], batch["action"], batch["is_first"])
    assert states["deter"].shape == (B, T, AGENT["deter"]) and last["deter"].shape == (B, AGENT["deter"])
    decoded = model.decode(states)
    assert decoded.shape == (B, T, D) and decoded.dtype == torch.float32
    parts, post, _ = model.loss(batch)
    assert tuple(parts) == WORLD_MODEL_LOSSES and all(torch.isfinite(v) and v.dim() == 0 for v in parts.values())
    parts["rec"].backward()
    for module in (model.encoder, model.decoder):
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_vector_dreamer_round_trips_through_the_exchange_format(tmp_path):
    torch.manual_seed(0)
    parts = build({"family": "dreamer", "obs_shape": [D], "action_spec": SPEC.to_dict(), "config": AGENT})
    save_dreamer(tmp_path / "m", parts, agent_config=AGENT, env_id="CartPole-v1",
                 env_options={"image_size": 64, "obs": "auto"})
    model = worldmodels.load(tmp_path / "m")
    # The env options say "vector", so the loader's env (the factory's make_vector) observes vectors again.
    assert model.obs_shape == (D,) and model.env_options == {"obs": "vector"}
    saved = parts["world_model"].state_dict()
    assert model.world_model.state_dict().keys() == saved.keys()
    assert all(torch.equal(value, saved[key]) for key, value in model.world_model.state_dict().items())
    action, _ = model.policy().act(torch.randn(2, D), torch.ones(2, dtype=torch.bool), None)
    assert action.shape == (2, SPEC.dim)
