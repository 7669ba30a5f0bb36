"""Both families through worldmodels.dreams (the protocol), dream_models(worldmodels.load(...)), and `wm dream` end to end on Catch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from scripts.cli import main
from scripts.dream import DreamConfig, run
from worldmodels.heldout import collect_episode
from worldmodels import dreams, viz
from worldmodels.core import WorldModel
from worldmodels.dreams import dream_models
from worldmodels.registry import load
from worldmodels.envs import make_vector
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.vm_world_model import VMWorldModel
from worldmodels.models.world_model import DreamerWorldModel
from worldmodels.policies import ActorHead, ControllerHead
from batches import random_chunk

S, A, Z, HIDDEN = 16, 3, 4, 8
CATCH = "worldmodels/Catch-v0"
SPEC = ActionSpec("discrete", A)


def tiny_worldmodels(controller: bool = True) -> tuple[VMWorldModel, ControllerHead | None]:
    from worldmodels.controllers.linear import make_controller
    from worldmodels.models.mdnrnn import MDNRNN
    from worldmodels.models.vae import ConvVAE

    torch.manual_seed(0)
    vae = ConvVAE(3, S, Z, depth=4, stages=4).eval()
    mdnrnn = MDNRNN(Z, A, HIDDEN, 2).eval()
    world_model = VMWorldModel(vae, mdnrnn, SPEC)
    if not controller:
        return world_model, None
    c = make_controller("linear", Z + HIDDEN, SPEC)
    return world_model, ControllerHead(c, torch.randn(1, c.num_params))


def tiny_dreamer_module():
    from trainers.modules.dreamer import DreamerAgentConfig, DreamerModule
    from worldmodels.config import to_dict

    torch.manual_seed(0)
    config = DreamerAgentConfig(deter=8, hidden=8, stoch=2, classes=3, depth=4, stages=4, layers=1, num_bins=15)
    return DreamerModule(obs_shape=(S, S, 3), action_spec=SPEC, config=to_dict(config)).eval()


def batch(B: int = 2, T: int = 7) -> dict[str, torch.Tensor]:
    return random_chunk(B, T, S, A)


@pytest.mark.parametrize("family", ["worldmodels", "worldmodels_random", "dreamer", "dreamer_random"])
def test_dreams_contract(family):
    if family.startswith("worldmodels"):
        world_model, head = tiny_worldmodels(controller=family == "worldmodels")
    else:
        module = tiny_dreamer_module()
        world_model, head = module.world_model, None if family.endswith("random") else module.actor_head()
    assert isinstance(world_model, WorldModel)
    b = batch()
    with torch.no_grad():
        recon = dreams.reconstruct(world_model, b["obs"][:, 0])
        assert recon.shape == (2, S, S, 3) and recon.dtype == torch.uint8
        out = dreams.open_loop(world_model, b["obs"], b["action"], b["is_first"], context=3)
        dream = dreams.dream(world_model, head, b["obs"][:, :3], b["action"][:, :3], b["is_first"][:, :3], horizon=5)
    for result, steps in ((out, 4), (dream, 5)):
        assert result["frames"].shape == (2, steps, S, S, 3) and result["frames"].dtype == torch.uint8
        assert result["reward"].shape == result["end"].shape == (2, steps)
        assert ((result["end"] >= 0) & (result["end"] <= 1)).all()
    if family.startswith("worldmodels"):
        sweep = dreams.latent_traversal(world_model, b["obs"][:1, 0], dims=3, steps=5, reference=b["obs"][0])
        assert sweep.shape == (3, 5, S, S, 3) and sweep.dtype == torch.uint8


def test_worldmodels_open_loop_alignment():
    """Predicted step 0 is M's output after reading context rows 0..K-1 (it predicts row K); step 1 reads action[K]."""
    world_model, _ = tiny_worldmodels()
    b, K = batch(T=6), 3
    with torch.no_grad():
        out = dreams.open_loop(world_model, b["obs"], b["action"], b["is_first"], context=K)
        z = world_model.vae.encode(viz_float(b["obs"][:, :K]))[0]
        ref, state = world_model.mdnrnn(z, b["action"][:, :K], b["is_first"][:, :K])
        torch.testing.assert_close(out["reward"][:, 0], ref["reward"][:, -1])
        # Changing the action at row K changes step 1 but not step 0.
        action = b["action"].clone()
        action[:, K] = action[:, K].roll(1, -1)
        changed = dreams.open_loop(world_model, b["obs"], action, b["is_first"], context=K)
    torch.testing.assert_close(changed["reward"][:, 0], out["reward"][:, 0])
    assert not torch.allclose(changed["reward"][:, 1], out["reward"][:, 1])


def viz_float(obs):
    from worldmodels.models.conv import to_float_image

    return to_float_image(obs)


def save_worldmodels_run(run_dir: Path, models: tuple[VMWorldModel, ControllerHead | None]) -> None:
    from worldmodels.families.vm import save_controller, save_stage

    world_model, head = models
    save_stage(run_dir / "vae", "vae", world_model.vae)
    save_stage(run_dir / "mdnrnn", "mdnrnn", world_model.mdnrnn)
    if head is None:  # no C yet: the dream uses random actions
        return
    save_controller(run_dir / "controller", head.controller, head.params[0])


def test_load_dream_models_worldmodels_run_and_component_dir(tmp_path):
    world_model, head = tiny_worldmodels()
    save_worldmodels_run(tmp_path, (world_model, head))
    for path in (tmp_path, tmp_path / "vae"):
        loaded, loaded_head = dream_models(load(path))
        assert isinstance(loaded, VMWorldModel) and isinstance(loaded_head, ControllerHead)
        torch.testing.assert_close(loaded_head.params, head.params)
        for a, b in zip(loaded.mdnrnn.state_dict().values(), world_model.mdnrnn.state_dict().values()):
            torch.testing.assert_close(a, b)


def test_load_dream_models_dreamer_pretrained_and_ckpt(tmp_path):
    from worldmodels.pretrained import save_dreamer

    module = tiny_dreamer_module()
    save_dreamer(tmp_path / "pre", {"world_model": module.world_model, "actor": module.actor, "critic": module.critic},
                 agent_config=module.hparams["config"], env_id=CATCH)
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, tmp_path / "last.ckpt")
    for path in (tmp_path / "pre", tmp_path / "last.ckpt"):
        loaded, head = dream_models(load(path))
        assert isinstance(loaded, DreamerWorldModel) and isinstance(head, ActorHead) and head.sample
        for a, b in zip(loaded.state_dict().values(), module.world_model.state_dict().values()):
            torch.testing.assert_close(a, b)


def test_load_dream_models_refuses_unknown_dirs(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved world model"):
        dream_models(load(tmp_path))


def test_wm_dream_writes_gifs_and_tensorboard(tmp_path):
    save_worldmodels_run(tmp_path / "run", tiny_worldmodels())
    out = tmp_path / "dreams"
    K, H, SAMPLES = 3, 4, 3
    code = main(["dream", "--checkpoint", str(tmp_path / "run"), "--env", CATCH, "--logdir", str(out), "--context", str(K),
                 "--horizon", str(H), "--episodes", "2", "--scale", "1", "--samples", str(SAMPLES), "--windows", "6"])
    assert code == 0
    names = {p.name for p in out.glob("*.gif")}
    assert names == {"open_loop_ep0.gif", "open_loop_ep1.gif", "dream_ep0.gif", "dream_ep1.gif",
                     "open_loop_samples_ep0.gif", "open_loop_samples_ep1.gif"}
    # The true tile of every open-loop frame is the real env frame (Catch frames have few colours: exact).
    env = make_vector(CATCH, 1, image_size=S)
    real = collect_episode(env, length=K + H, seed=1)["obs"][0].numpy()
    env.close()
    strip = viz.decode_gif((out / "open_loop_ep1.gif").read_bytes())
    assert strip.shape[0] == K + H
    layout = viz.strip_layout((S, S), scale=1)
    np.testing.assert_array_equal(layout.tile(strip, 0), real)
    np.testing.assert_array_equal(layout.tile(strip, 1)[:K], real[:K])
    # The samples clip: the real frame, then each of the SAMPLES futures (the real frame during the context).
    samples = viz.decode_gif((out / "open_loop_samples_ep1.gif").read_bytes())
    assert samples.shape == (K + H, S + 4, 2 + (SAMPLES + 1) * (S + 2), 3)
    np.testing.assert_array_equal(samples[:, 2:2 + S, 2:2 + S], real)
    np.testing.assert_array_equal(samples[:K, 2:2 + S, 2 + SAMPLES * (S + 2):2 + SAMPLES * (S + 2) + S], real[:K])
    dream = viz.decode_gif((out / "dream_ep0.gif").read_bytes())
    assert dream.shape[0] == K + H
    events = EventAccumulator(str(out), size_guidance={"images": 0})
    events.Reload()
    assert set(events.Tags()["images"]) == {"dreams/open_loop/sample_0", "dreams/open_loop/sample_1", "dreams/imagined/sample_0",
                                           "dreams/imagined/sample_1", "dreams/reconstruction", "dreams/latent_traversal"}
    (summary,) = events.Images("dreams/open_loop/sample_1")
    np.testing.assert_array_equal(viz.decode_gif(summary.encoded_image_string), strip)
    # The fair protocol by default: random- and agent-policy windows (the model has a controller), K samples.
    scalars = set(events.Tags()["scalars"])
    assert {"kpi/sample_mean_mse_h1_random", "kpi/best_of_k_mse_h1_agent", "kpi/moving_fraction_h1_random",
            "kpi/windows_random", "kpi/windows_agent", "kpi/samples"} <= scalars, sorted(scalars)
    assert not scalars & {"kpi/open_loop_mse_h1", "kpi/open_loop_psnr_h1"}  # the old protocol's: --protocol first-rows


def test_wm_dream_start_samples_and_protocols(tmp_path, capsys):
    """--start T renders rows T.. of the episode; first-rows keeps the old KPIs and clip, both has both key sets."""
    save_worldmodels_run(tmp_path / "run", tiny_worldmodels())
    K, H, T = 2, 3, 4
    common = ["dream", "--checkpoint", str(tmp_path / "run"), "--env", CATCH, "--context", str(K), "--horizon", str(H),
              "--episodes", "1", "--scale", "1", "--windows", "4", "--samples", "2"]
    assert main([*common, "--logdir", str(tmp_path / "late"), "--start", str(T)]) == 0
    env = make_vector(CATCH, 1, image_size=S)
    real = collect_episode(env, length=T + K + H, seed=0)["obs"][0].numpy()
    env.close()
    strip = viz.decode_gif((tmp_path / "late" / "open_loop_ep0.gif").read_bytes())
    np.testing.assert_array_equal(viz.strip_layout((S, S), scale=1).tile(strip, 0), real[T:])
    results = {}
    for protocol in ("first-rows", "both"):
        results[protocol] = run(DreamConfig(checkpoint=str(tmp_path / "run"), env=CATCH, logdir=str(tmp_path / protocol),
                                            context=K, horizon=H, episodes=1, scale=1, windows=4, samples=2,
                                            protocol=protocol, mp4=False))
    old = results["first-rows"]["kpis"]
    assert "kpi/open_loop_mse_h1" in old and not any(key.endswith(("_random", "_agent")) for key in old)
    assert not (tmp_path / "first-rows" / "open_loop_samples_ep0.gif").exists()
    both = results["both"]["kpis"]
    # The same numbers up to M's sampling noise at temperature 0 (sigma * 1e-3, drawn at another point of the stream)
    assert {key: both[key] for key in old} == pytest.approx(old, rel=1e-2) and "kpi/sample_mean_mse_h1_agent" in both
    # A start that leaves no row to predict in the 10-row Catch episode: one line naming the flags.
    assert main([*common, "--logdir", str(tmp_path / "x"), "--start", "8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--start + --context" in err[0], err


def test_wm_dream_run_returns_paths(tmp_path, capsys):
    save_worldmodels_run(tmp_path / "run", tiny_worldmodels(controller=False))
    result = run(DreamConfig(checkpoint=str(tmp_path / "run" / "mdnrnn"), env=CATCH, logdir=str(tmp_path / "d"),
                             context=2, horizon=3, episodes=1, scale=1))
    assert [Path(p).name for p in result["gifs"]] == ["open_loop_ep0.gif", "open_loop_samples_ep0.gif", "dream_ep0.gif"]
    assert all(Path(p).is_file() for p in result["gifs"] + result["mp4s"])
    assert "kpi/sample_mean_mse_h1_random" in result["kpis"] and "kpi/windows_agent" not in result["kpis"]  # no C
    assert f"tensorboard --logdir {tmp_path / 'd'}" in capsys.readouterr().out


def test_wm_dream_user_errors_are_one_line(tmp_path, capsys):
    assert main(["dream", "--checkpoint", str(tmp_path / "missing"), "--env", CATCH]) == 2
    assert main(["dream", "--env", CATCH]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no such file" in err[0] and "--checkpoint is required" in err[1]
