"""The one progress display: the non-TTY line (with its ETA), its schedule, the TTY bar, and the Lightning callback."""

from __future__ import annotations

import io

import lightning as L
import pytest
import torch

from trainers.modules.callbacks import ProgressLog
from worldmodels.progress import Progress, format_duration, format_line


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_line_format_names_stage_count_rate_and_eta():
    assert format_line("vae", 1200, 4000, unit="step", rate=2.1) == "vae step 1200/4000 (30%), 2.1 steps/s, ETA 22 min"
    assert (format_line("collect", 3, 8, unit="episode", rate=0.5, detail="900 env steps/s")
            == "collect episode 3/8 (38%), 0.5 episodes/s, ETA 10 s; 900 env steps/s")
    assert format_line("m", 5, 5, unit="step", rate=1.0, elapsed=5400) == "m step 5/5 (100%), 1 steps/s, done in 1.5 h"
    assert format_line("m", 0, 5, unit="step", rate=0.0).endswith("ETA ?")  # nothing done yet: no rate to divide by
    assert [format_duration(s) for s in (45, 89, 120, 5399, 5400)] == ["45 s", "89 s", "2 min", "90 min", "1.5 h"]


def test_log_lines_every_quarter_and_every_30_seconds():
    clock, stream = FakeClock(), io.StringIO()
    with Progress("vae", 8, stream=stream, clock=clock, tty=False) as progress:
        for step in range(1, 9):  # fast steps: one line per 25 % (steps 2, 4, 6) and the finished one
            clock.now = step * 0.5
            progress.update(detail=f"loss {1 / step:.2f}")
    assert lines(stream) == ["vae step 2/8 (25%), 2 steps/s, ETA 3 s; loss 0.50",
                             "vae step 4/8 (50%), 2 steps/s, ETA 2 s; loss 0.25",
                             "vae step 6/8 (75%), 2 steps/s, ETA 1 s; loss 0.17",
                             "vae step 8/8 (100%), 2 steps/s, done in 4 s; loss 0.12"]
    clock, stream = FakeClock(), io.StringIO()
    progress = Progress("m", 1000, stream=stream, clock=clock, tty=False)
    for step in range(1, 101):  # 10 % of the run at 1 step per 3 s: the 30 s rule alone writes (steps 10, 20, ...)
        clock.now = 3.0 * step
        progress.set(step)
    assert len(lines(stream)) == 10 and lines(stream)[0] == "m step 10/1000 (1%), 0.333 steps/s, ETA 50 min"


def test_resumed_stage_rate_counts_only_new_work_and_close_writes_once():
    clock, stream = FakeClock(), io.StringIO()
    progress = Progress("dreamer", 100, initial=60, stream=stream, clock=clock, tty=False)
    clock.now = 10.0
    progress.set(70)  # 10 steps in 10 s since the resume, not 70
    progress.close()
    progress.close()
    assert lines(stream) == ["dreamer step 70/100 (70%), 1 steps/s, ETA 30 s"]


def test_tty_shows_a_bar_and_disabled_shows_nothing():
    stream = io.StringIO()
    with Progress("collect", 4, unit="episode", stream=stream, tty=True) as progress:
        progress.update(4)
    assert "collect" in stream.getvalue() and "4/4" in stream.getvalue() and "episode 4/4" not in stream.getvalue()
    quiet = io.StringIO()
    with Progress("collect", 4, stream=quiet, enabled=False) as progress:
        progress.update(4)
    assert quiet.getvalue() == "" and progress.done == 4
    with pytest.raises(ValueError, match="must be >= 0"):
        Progress("x", -1)


class Regression(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        loss = self.net(batch).pow(2).mean()
        self.log("train/loss", loss, on_step=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_callback_writes_progress_lines_during_a_tiny_fit(tmp_path, capsys):
    torch.manual_seed(0)
    trainer = L.Trainer(max_steps=4, logger=False, callbacks=[ProgressLog("vae")], enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(Regression(), train_dataloaders=torch.utils.data.DataLoader(torch.randn(8, 2), batch_size=2))
    written = [line for line in capsys.readouterr().err.splitlines() if line.startswith("vae step ")]
    # 4 steps, one line per quarter; the last one is the finished line with the last logged loss.
    assert len(written) == 4 and written[0].startswith("vae step 1/4 (25%)") and "ETA" in written[0]
    assert written[-1].startswith("vae step 4/4 (100%)") and "done in" in written[-1] and "train/loss " in written[-1]


def test_callback_of_a_resumed_fit_starts_from_the_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    data = torch.utils.data.DataLoader(torch.randn(8, 2), batch_size=2)

    def fit(max_steps: int, ckpt_path: str | None = None) -> list[str]:
        trainer = L.Trainer(max_steps=max_steps, logger=False, callbacks=[ProgressLog("mdnrnn")],
                            default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False,
                            accelerator="cpu", devices=1)
        trainer.fit(Regression(), train_dataloaders=data, ckpt_path=ckpt_path, weights_only=True)
        return [line for line in capsys.readouterr().err.splitlines() if line.startswith("mdnrnn step ")]

    fit(2)
    (checkpoint,) = (tmp_path / "checkpoints").glob("*.ckpt")
    resumed = fit(4, str(checkpoint))
    # Steps 3 and 4 of 4 only (the bar starts at the checkpoint's step 2, at 50 %).
    assert [line.split(",")[0] for line in resumed] == ["mdnrnn step 3/4 (75%)", "mdnrnn step 4/4 (100%)"]
