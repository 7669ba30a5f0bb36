"""Issue 15 item 1, the reported commands: a diverging run exits non-zero with one line naming the stage,
step and loss part; no NaN model is written, exported or marked DONE."""

from __future__ import annotations

import pytest

from scripts.cli import main
from worldmodels.models.vae import ConvVAE
from worldmodels.models.world_model import DreamerWorldModel


def _one_line(capsys) -> str:
    """The one error line (Lightning's INFO lines also go to stderr)."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert "NonFiniteError" not in err and len(errors) == 1, err
    return errors[0]


def _diverge(monkeypatch, cls, part: str, *, after: int = 0) -> None:
    """``cls.loss`` gives a NaN ``part`` from its ``after + 1``-th call on, gradients included: a divergence that
    needs no learning rate past the flags' maxima (``--vae-lr 1e12`` is refused before anything runs)."""
    real, calls = cls.loss, [0]

    def loss(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        calls[0] += 1
        if calls[0] > after:
            out[0][part] = out[0][part] * float("nan")
        return out

    monkeypatch.setattr(cls, "loss", loss)


def test_worldmodels_with_a_diverging_vae_stops_at_v(tmp_path, capsys, monkeypatch):
    _diverge(monkeypatch, ConvVAE, "rec", after=15)
    run_dir = tmp_path / "run"
    argv = ["worldmodels", "--preset", "debug", "--env", "worldmodels/Catch-v0", "--vae-steps", "40", "--mdnrnn-steps",
            "40", "--checkpoint-every", "10", "--run-dir", str(run_dir)]
    assert main(argv) == 2
    line = _one_line(capsys)
    assert line.startswith("wm worldmodels: error: vae step ") and "loss part" in line, line
    for stage in ("vae", "mdnrnn", "controller"):
        assert not (run_dir / stage / "DONE").exists() and not (run_dir / stage / "model.safetensors").exists()
    assert not (run_dir / "eval.json").exists()


def test_dreamer_with_a_diverging_world_model_stops(tmp_path, capsys, monkeypatch):
    _diverge(monkeypatch, DreamerWorldModel, "rec")
    run_dir = tmp_path / "run"
    argv = ["dreamer", "--preset", "debug", "--env", "worldmodels/Catch-v0", "--run-dir", str(run_dir)]
    assert main(argv) == 2
    line = _one_line(capsys)
    assert line.startswith("wm dreamer: error: dreamer step ") and "loss part" in line, line
    assert not (run_dir / "eval.json").exists() and not (run_dir / "results.json").exists()
    assert not (run_dir / "checkpoints" / "last.ckpt").exists()  # diverged before the first checkpoint


# Hardening: the commands outside Lightning (their own optimiser loops) and the envs' own NaN.
MBPO = ["mbpo", "--env", "Pendulum-v1", "--steps", "60", "--warmup-steps", "20", "--model-every", "20",
        "--rollout-every", "20", "--rollouts", "20", "--updates-per-step", "1", "--batch-size", "16", "--hidden", "16",
        "--model-hidden", "16", "--eval-episodes", "1"]
PETS = ["pets", "--env", "Pendulum-v1", "--steps", "250", "--horizon", "3", "--candidates", "8", "--cem-elites", "2",
        "--iterations", "1", "--particles", "1", "--hidden", "16", "--epochs", "1", "--eval-episodes", "1",
        "--eval-envs", "1", "--tensorboard", "false"]
TDMPC = ["tdmpc", "--env", "Pendulum-v1", "--steps", "30", "--seed-steps", "20", "--pretrain-updates", "2",
         "--batch-size", "8", "--hidden", "16", "--latent-dim", "16", "--candidates", "8", "--iterations", "1",
         "--prior-candidates", "2", "--eval-episodes", "1"]


def _nan_after(monkeypatch, module, name: str, part: str, *, after: int = 0) -> None:
    """``module.name`` (a loss function returning a dict of parts) gives a NaN ``part`` from call ``after + 1`` on."""
    real, calls = getattr(module, name), [0]

    def loss(*args, **kwargs):
        out = real(*args, **kwargs)
        calls[0] += 1
        if calls[0] > after:
            out[part] = out[part] * float("nan")
        return out

    monkeypatch.setattr(module, name, loss)


def _nothing_nan_written(run_dir) -> None:
    assert not (run_dir / "eval.json").exists() and not (run_dir / "results.json").exists()
    assert not (run_dir / "model").exists()


def test_mbpo_with_a_diverging_sac_stops(tmp_path, capsys, monkeypatch):
    import trainers.runs.mbpo as mbpo_run  # the learner's step calls sac_losses from there

    _nan_after(monkeypatch, mbpo_run, "sac_losses", "critic", after=3)
    assert main([*MBPO, "--run-dir", str(tmp_path / "run")]) == 2  # exited 0 with "agent nan ± nan"
    line = _one_line(capsys)
    assert line.startswith("wm mbpo: error: sac update 3: loss part 'critic' is nan"), line
    _nothing_nan_written(tmp_path / "run")


def test_pets_with_a_diverging_ensemble_stops_at_the_fit(tmp_path, capsys, monkeypatch):
    from worldmodels.pets.ensemble import ProbabilisticEnsemble

    real = ProbabilisticEnsemble.loss
    monkeypatch.setattr(ProbabilisticEnsemble, "loss",
                        lambda self, *a, **k: {key: value * float("nan") for key, value in real(self, *a, **k).items()})
    assert main([*PETS, "--run-dir", str(tmp_path / "run")]) == 2  # failed only at the final save, eval.json left
    line = _one_line(capsys)
    assert line.startswith("wm pets: error: ensemble fit 0 step 0: loss part 'nll' is nan"), line
    assert "lower --lr" in line, line
    _nothing_nan_written(tmp_path / "run")


def test_tdmpc_with_a_diverging_model_stops(tmp_path, capsys, monkeypatch):
    import trainers.runs.tdmpc as tdmpc

    _nan_after(monkeypatch, tdmpc, "prior_loss", "prior")
    assert main([*TDMPC, "--run-dir", str(tmp_path / "run")]) == 2
    line = _one_line(capsys)
    assert line.startswith("wm tdmpc: error: tdmpc prior update 0: loss part 'prior' is nan"), line
    _nothing_nan_written(tmp_path / "run")


@pytest.mark.parametrize("command", [MBPO, PETS, TDMPC])
@pytest.mark.parametrize("env, what", [("faulty_envs:NanReward-v0", "returned the reward nan at episode 0 step 3"),
                                       ("faulty_envs:NanObs-v0", "returned an observation holding nan from step() "
                                                                 "at episode 0 step 3")])
def test_an_env_going_nan_stops_the_run_naming_it(tmp_path, capsys, command, env, what):
    argv = [*command, "--run-dir", str(tmp_path / "run")]
    argv[argv.index("--env") + 1] = env
    assert main(argv) == 2  # mbpo: exit 0, "agent nan ± nan" and NaN in eval.json
    line = _one_line(capsys)
    assert f"error: env {env} {what}" in line, line
    _nothing_nan_written(tmp_path / "run")


def test_a_non_finite_return_is_never_an_eval_record():
    from worldmodels.evaluation import eval_record
    from worldmodels.finite import NonFiniteError

    with pytest.raises(NonFiniteError, match=r"the agent's return of episode 1 is nan; no eval.json was written"):
        eval_record(env_id="e", seed=0, returns=[1.0, float("nan")], random_returns=[0.0, 0.0])


def test_tdmpc_blames_a_nan_batch_not_the_learning_rate():
    """NaN rewards past the env checks (a batch given straight to the learner): the message names the batch."""
    import torch

    from trainers.runs.tdmpc import TDMPCLearner, TDMPCRunConfig, build_model
    from worldmodels.envs.spaces import ActionSpec
    from worldmodels.finite import NonFiniteError

    config = TDMPCRunConfig(hidden=16, latent_dim=16, horizon=2)
    spec = ActionSpec(kind="continuous", dim=1, low=(-1.0,), high=(1.0,))
    learner = TDMPCLearner(build_model(config, (3,), spec), config)
    B, T = 4, config.horizon + 1
    batch = {"obs": torch.zeros(B, T, 3), "action": torch.zeros(B, T, 1), "reward": torch.full((B, T), float("nan")),
             "terminated": torch.zeros(B, T, dtype=torch.bool), "truncated": torch.zeros(B, T, dtype=torch.bool),
             "is_first": torch.zeros(B, T, dtype=torch.bool)}
    with pytest.raises(NonFiniteError, match="the batch's reward is not finite") as raised:
        learner.update(batch)
    assert "--lr" not in str(raised.value)
