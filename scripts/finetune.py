"""Fine-tune a pretrained world model (either family) on another env, new data, or a new reward.

``wm finetune --from checkpoints/NAME --env ALE/Breakout-v5 --updates 2000 --run-dir runs/ft``

Only the action-dependent layers are re-initialised when the action space changes (one line lists exactly
which); ``--reward-only`` re-fits the reward head and re-trains the controller / actor; ``--freeze`` keeps
the encoder or the dynamics fixed. The training is :mod:`trainers.runs.finetune`; a killed fine-tune resumes
when rerun, and the result is exported to ``RUN_DIR/pretrained``. The target env is checked first: its
observations must be the model's (the action space may differ), and ``--run-dir`` must not hold the source.
"""

from __future__ import annotations

import json
from pathlib import Path

from trainers.runs.finetune import FinetuneConfig, finetune, resolve_source
from worldmodels.envs.spaces import ActionSpec
from worldmodels.evaluation import result_table
from worldmodels.locking import exclusive_lock
from worldmodels.pretrained import make_env_for
from worldmodels.registry import load

CONFIG = FinetuneConfig
CLI_ALIASES = {"--from": "source"}  # `from` is a Python keyword, so the field is `source`
DEPRECATED_ALIASES = {"--steps": ("updates", "here it meant optimiser steps; --steps counts agent steps on every "
                                             "training command")}
DEFAULT_PRESET = "default"
PRESETS: dict[str, dict] = {
    "default": {},
    "debug": dict(family_preset="debug", updates=4, episodes=4, max_episode_steps=20, device="cpu"),
}


def check_target(config: FinetuneConfig) -> None:
    """One line, before anything is collected or trained, when the target env's observations are not the source
    model's (THE spaces check; the action space may change: its layers are re-initialised), or when ``--run-dir``
    holds the source (the fine-tune's eval.json and pretrained/ would overwrite it)."""
    source = resolve_source(config.source).resolve()
    run_dir = Path(config.run_dir).resolve()
    if run_dir == source or run_dir in source.parents:
        raise ValueError(f"--run-dir {config.run_dir} holds the source model --from {config.source}; the fine-tune "
                         f"writes its own eval.json and pretrained/ there: choose a new --run-dir")
    make_env_for(load(source, allow_unverified=config.allow_unverified), config.env, 1, seed=config.seed, adapt_actions=True).close()


def run(config: FinetuneConfig) -> dict:
    """Fine-tune, print what was re-initialised and frozen and the agent vs random; returns ``finetune.json``'s dict."""
    check_target(config)
    with exclusive_lock(config.run_dir, what="run directory"), \
            exclusive_lock(Path(config.run_dir) / "episodes", what="episode store"):
        result = finetune(config)
    source, target = ActionSpec.from_dict(result["source_action_spec"]), ActionSpec.from_dict(result["action_spec"])
    line = (f"action space {source.kind}({source.dim}) -> {target.kind}({target.dim}): re-initialised "
            f"{', '.join(result['reinitialised']) or 'nothing'}" if result["action_space_changed"] else
            f"same action space ({target.kind}({target.dim})): nothing re-initialised")
    print(f"wm finetune: {result['source_env']} -> {result['env']}; {line}; frozen: {', '.join(result['frozen']) or 'nothing'}")
    eval_path = Path(config.run_dir) / "eval.json"  # both families' fine-tunes end with an agent-vs-random evaluation
    print(f"{result_table(json.loads(eval_path.read_text()))}\n-> {eval_path}")
    return result
