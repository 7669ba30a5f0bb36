"""The family adapters (WorldModelView contract), load_view, and `wm dream` end to end on the Catch toy env."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from scripts.cli import main
from scripts.dream import DreamConfig, collect_episode, run
from trainers.views import DreamerView, WorldModelView, WorldModelsView, load_view
from worldmodels import viz
from worldmodels.envs.spaces import ActionSpec

S, A, Z, HIDDEN = 16, 3, 4, 8
CATCH = "worldmodels/Catch-v0"
SPEC = ActionSpec("discrete", A)


def tiny_worldmodels(controller: bool = True) -> WorldModelsView:
    from worldmodels.controllers.linear import make_controller
    from worldmodels.models.mdnrnn import MDNRNN
    from worldmodels.models.vae import ConvVAE

    torch.manual_seed(0)
    vae = ConvVAE(3, S, Z, depth=4, stages=4).eval()
    mdnrnn = MDNRNN(Z, A, HIDDEN, 2).eval()
    if not controller:
        return WorldModelsView(vae, mdnrnn, action_spec=SPEC)
    c = make_controller("linear", Z + HIDDEN, SPEC)
    return WorldModelsView(vae, mdnrnn, c, torch.randn(1, c.num_params))


def tiny_dreamer_module():
    from trainers.dreamer_module import DreamerAgentConfig, DreamerModule
    from worldmodels.config import to_dict

    torch.manual_seed(0)
    config = DreamerAgentConfig(deter=8, hidden=8, stoch=2, classes=3, depth=4, stages=4, layers=1, num_bins=15)
    return DreamerModule(obs_shape=(S, S, 3), action_spec=SPEC, config=to_dict(config)).eval()


def batch(B: int = 2, T: int = 7) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True
    return {"obs": torch.randint(0, 256, (B, T, S, S, 3), generator=g, dtype=torch.uint8),
            "action": torch.nn.functional.one_hot(torch.randint(0, A, (B, T), generator=g), A).float(),
            "is_first": is_first}


@pytest.mark.parametrize("family", ["worldmodels", "worldmodels_random", "dreamer", "dreamer_random"])
def test_view_contract(family):
    if family.startswith("worldmodels"):
        view = tiny_worldmodels(controller=family == "worldmodels")
    else:
        module = tiny_dreamer_module()
        view = DreamerView(module.world_model, None if family.endswith("random") else module.actor, action_spec=SPEC)
    assert isinstance(view, WorldModelView)
    b = batch()
    with torch.no_grad():
        recon = view.reconstruct(b["obs"][:, 0])
        assert recon.shape == (2, S, S, 3) and recon.dtype == torch.uint8
        out = view.open_loop(b["obs"], b["action"], b["is_first"], context=3)
        dream = view.dream(b["obs"][:, :3], b["action"][:, :3], b["is_first"][:, :3], horizon=5)
    for result, steps in ((out, 4), (dream, 5)):
        assert result["frames"].shape == (2, steps, S, S, 3) and result["frames"].dtype == torch.uint8
        assert result["reward"].shape == result["end"].shape == (2, steps)
        assert ((result["end"] >= 0) & (result["end"] <= 1)).all()
    if family.startswith("worldmodels"):
        sweep = view.latent_traversal(b["obs"][:1, 0], dims=3, steps=5, reference=b["obs"][0])
        assert sweep.shape == (3, 5, S, S, 3) and sweep.dtype == torch.uint8


def test_worldmodels_open_loop_alignment():
    """Predicted step 0 is M's output after reading context rows 0..K-1 (it predicts row K); step 1 reads action[K]."""
    view = tiny_worldmodels()
    b, K = batch(T=6), 3
    with torch.no_grad():
        out = view.open_loop(b["obs"], b["action"], b["is_first"], context=K)
        z = view.vae.encode(viz_float(b["obs"][:, :K]))[0]
        ref, state = view.mdnrnn(z, b["action"][:, :K], b["is_first"][:, :K])
        torch.testing.assert_close(out["reward"][:, 0], ref["reward"][:, -1])
        # Changing the action at row K changes step 1 but not step 0.
        action = b["action"].clone()
        action[:, K] = action[:, K].roll(1, -1)
        changed = view.open_loop(b["obs"], action, b["is_first"], context=K)
    torch.testing.assert_close(changed["reward"][:, 0], out["reward"][:, 0])
    assert not torch.allclose(changed["reward"][:, 1], out["reward"][:, 1])


def viz_float(obs):
    from worldmodels.models.conv import to_float_image

    return to_float_image(obs)


def save_worldmodels_run(run_dir: Path, view: WorldModelsView) -> None:
    from scripts.evaluate import save_component, save_controller

    save_component(run_dir / "vae", "vae", view.vae, dict(in_channels=3, image_size=S, z_dim=Z, depth=4, stages=4))
    save_component(run_dir / "mdnrnn", "mdnrnn", view.mdnrnn, dict(z_dim=Z, action_dim=A, hidden_size=HIDDEN, num_mixtures=2))
    if view.params is None:  # no C yet: the dream uses random actions
        return
    save_controller(run_dir / "controller", view.params.numpy(), kind="linear", input_dim=Z + HIDDEN, action_spec=SPEC,
                    hidden_size=32)


def test_load_view_worldmodels_run_and_component_dir(tmp_path):
    view = tiny_worldmodels()
    save_worldmodels_run(tmp_path, view)
    for path in (tmp_path, tmp_path / "vae"):
        loaded = load_view(path)
        assert isinstance(loaded, WorldModelsView) and loaded.controller is not None
        torch.testing.assert_close(loaded.params, view.params)
        for a, b in zip(loaded.mdnrnn.state_dict().values(), view.mdnrnn.state_dict().values()):
            torch.testing.assert_close(a, b)


def test_load_view_dreamer_pretrained_and_ckpt(tmp_path):
    from worldmodels.checkpoint import save_pretrained

    module = tiny_dreamer_module()
    save_pretrained(tmp_path / "pre", {"world_model": module.world_model, "actor": module.actor},
                    {"family": "dreamer", "env_id": CATCH, **module.hparams})
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, tmp_path / "last.ckpt")
    for path in (tmp_path / "pre", tmp_path / "last.ckpt"):
        loaded = load_view(path)
        assert isinstance(loaded, DreamerView)
        for a, b in zip(loaded.world_model.state_dict().values(), module.world_model.state_dict().values()):
            torch.testing.assert_close(a, b)


def test_load_view_refuses_unknown_dirs(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved world model"):
        load_view(tmp_path)


def test_wm_dream_writes_gifs_and_tensorboard(tmp_path):
    view = tiny_worldmodels()
    save_worldmodels_run(tmp_path / "run", view)
    out = tmp_path / "dreams"
    K, H = 3, 4
    code = main(["dream", "--checkpoint", str(tmp_path / "run"), "--env", CATCH, "--logdir", str(out), "--context", str(K),
                 "--horizon", str(H), "--episodes", "2", "--scale", "1"])
    assert code == 0
    names = {p.name for p in out.glob("*.gif")}
    assert names == {"open_loop_ep0.gif", "open_loop_ep1.gif", "dream_ep0.gif", "dream_ep1.gif"}
    # The true tile of every open-loop frame is the real env frame (Catch frames have few colours: exact).
    real = collect_episode(CATCH, image_size=S, length=K + H, seed=1)["obs"][0].numpy()
    strip = viz.decode_gif((out / "open_loop_ep1.gif").read_bytes())
    assert strip.shape[0] == K + H
    layout = viz.strip_layout((S, S), scale=1)
    np.testing.assert_array_equal(layout.tile(strip, 0), real)
    np.testing.assert_array_equal(layout.tile(strip, 1)[:K], real[:K])
    dream = viz.decode_gif((out / "dream_ep0.gif").read_bytes())
    assert dream.shape[0] == K + H
    events = EventAccumulator(str(out), size_guidance={"images": 0})
    events.Reload()
    assert set(events.Tags()["images"]) == {"dreams/open_loop/sample_0", "dreams/open_loop/sample_1", "dreams/imagined/sample_0",
                                           "dreams/imagined/sample_1", "dreams/reconstruction", "dreams/latent_traversal"}
    (summary,) = events.Images("dreams/open_loop/sample_1")
    np.testing.assert_array_equal(viz.decode_gif(summary.encoded_image_string), strip)
    assert {"kpi/open_loop_mse_h1", "kpi/open_loop_psnr_h1", "kpi/reward_mae", "kpi/termination_accuracy"} <= set(events.Tags()["scalars"])


def test_wm_dream_run_returns_paths(tmp_path, capsys):
    save_worldmodels_run(tmp_path / "run", tiny_worldmodels(controller=False))
    result = run(DreamConfig(checkpoint=str(tmp_path / "run" / "mdnrnn"), env=CATCH, logdir=str(tmp_path / "d"),
                             context=2, horizon=3, episodes=1, scale=1))
    assert [Path(p).name for p in result["gifs"]] == ["open_loop_ep0.gif", "dream_ep0.gif"]
    assert all(Path(p).is_file() for p in result["gifs"] + result["mp4s"])
    assert "kpi/open_loop_psnr_h1" in result["kpis"]
    assert f"tensorboard --logdir {tmp_path / 'd'}" in capsys.readouterr().out


def test_wm_dream_user_errors_are_one_line(tmp_path, capsys):
    assert main(["dream", "--checkpoint", str(tmp_path / "missing"), "--env", CATCH]) == 2
    assert main(["dream", "--env", CATCH]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no such file" in err[0] and "--checkpoint is required" in err[1]
