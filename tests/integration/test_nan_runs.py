"""Issue 15 item 1, the reported commands: a diverging run exits non-zero with one line naming the stage,
step and loss part; no NaN model is written, exported or marked DONE."""

from __future__ import annotations

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
