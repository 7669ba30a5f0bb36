"""Evaluate any saved model in the real env, next to a uniform random policy on the same seeds.

``--run-dir`` is a ``wm worldmodels`` or ``wm dreamer`` run, an exported whole-model directory or a shipped
name; it is read by ``worldmodels.load`` and played by its policy (C on ``[z, h]``, or the actor's mode)
through the one env driver (``worldmodels.evaluation``). Episode ``j`` of both policies starts from
``seed + j``. Writes ``eval-<EPISODES>ep-seed<SEED>.json`` (the one ``eval.json`` schema: env, seed, episodes,
returns, return_mean, return_std, random_returns, random_mean, random_std) into the run directory, or ``--out``, and
returns the same dict; the training run's own ``eval.json`` is never written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from worldmodels.checkpoint import allow_unverified_arg
from worldmodels.config import arg, file_problem, threads_arg
from worldmodels.envs.toy import register_toy_envs
from worldmodels.evaluation import summary_line, write_eval
from worldmodels.model_evaluation import evaluate_model
from worldmodels.pretrained import eval_path
from worldmodels.profiling import resolve_device, set_threads
from worldmodels.registry import load


@dataclass
class EvaluateConfig:
    run_dir: str = arg("runs/worldmodels", "a run directory, an exported model directory or a shipped model name")
    env: str = arg("", "env id; empty = the env the model was trained on")
    out: str = arg("", "record path; empty = RUN_DIR/eval-<EPISODES>ep-seed<SEED>.json (for a shipped model: in the "
                       "working directory; for another --env than the model's: ...-<ENV>.json), never the training "
                       "run's own eval.json",
                  check=lambda c: file_problem(c.out) if c.out else None)  # refused before any episode is played
    episodes: int = arg(20, "evaluation episodes (the paper reports 100)", minimum=1, maximum=10**6)
    seed: int = arg(10_000, "episode j resets with seed + j; the random baseline uses the same seeds", minimum=0,
                    maximum=2**32 - 1)
    num_envs: int = arg(8, "parallel envs stepped as one vector env", minimum=1, maximum=1024)
    max_episode_steps: Optional[int] = arg(None, "env option: truncate episodes after this many agent steps (None = the model's / env default)", minimum=1,
                                           maximum=10**7)
    frameskip: Optional[int] = arg(None, "env option: agent step = this many env steps (None = the model's / env default)", minimum=1,
                                   maximum=1000)
    sample: bool = arg(False, "Dreamer: sample the actor's actions instead of taking its mode")
    device: str = arg("auto", "torch device of the model: auto, cpu or cuda")
    threads: str = threads_arg("0")
    allow_unverified: bool = allow_unverified_arg()


CONFIG = EvaluateConfig


def run(config: EvaluateConfig) -> dict:
    register_toy_envs()
    set_threads(config.threads)
    device = resolve_device(config.device)
    try:
        model = load(config.run_dir, device, allow_unverified=config.allow_unverified)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"--run-dir {config.run_dir!r} is not a finished `wm worldmodels` run, a `wm dreamer` run, "
                                f"an exported model or a shipped name: {error}") from None
    record = evaluate_model(model, episodes=config.episodes, seed=config.seed, env_id=config.env,
                            num_envs=config.num_envs, max_episode_steps=config.max_episode_steps,
                            frameskip=config.frameskip, sample=config.sample, device=device, progress=True)
    # The run's own eval.json is its training's record: an evaluation goes next to it, named by what it played (the
    # episodes, the seed and, for another env, the env), never over it.
    stem = f"eval-{config.episodes}ep-seed{config.seed}"
    path = Path(config.out) if config.out else eval_path(model, stem, config.env)
    write_eval(path, record)
    print(f"wm evaluate: {summary_line(record)} -> {path}")
    return record
