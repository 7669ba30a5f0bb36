"""Model-predictive control over any saved world model, next to a uniform random policy on the same seeds.

``--checkpoint`` is anything ``worldmodels.load`` reads: a ``wm worldmodels`` run (V and M suffice, no C
needed), a ``wm dreamer`` run, a ``wm pets`` run (played in its vector-observation env), an exported model
directory or a shipped name (``takecover-worldmodels-cpu``).
The chosen planner (``worldmodels.planning.PLANNERS``) plans inside the model's world model at every step
and :class:`~worldmodels.policies.PlannerPolicy` executes each plan's first action through the one env
driver. Writes ``eval.json`` (the ``wm evaluate`` schema plus ``"planner"``: its settings and planning
milliseconds per action; ``"open_loop"``: the model's open-loop error by horizon on the planner's episodes)
to ``--out`` and returns the same dict. TensorBoard KPIs (:mod:`worldmodels.kpis`, plus
``kpi/return_vs_env_steps`` at the model's training env steps) go to ``tb/plan-<PLANNER>/`` next to that file.
Planning on another ``--env`` (same spaces as the model's, else a one-line error) writes
``eval-plan-<PLANNER>-<ENV>.json`` and ``tb/plan-<PLANNER>-<ENV>/`` instead, never over the model's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from worldmodels.checkpoint import allow_unverified_arg
from worldmodels.config import arg, file_problem, threads_arg
from worldmodels.envs.toy import register_toy_envs
from worldmodels.evaluation import summary_line, write_eval
from worldmodels.kpis import EpisodeRecorder, log_planner_kpis, log_return_vs_env_steps, open_loop_errors
from worldmodels.planning import PLANNERS
from worldmodels.planning.base import SamplingPlanner
from worldmodels.policies import PlannerPolicy
from worldmodels.model_evaluation import evaluate_model
from worldmodels.pretrained import eval_path
from worldmodels.profiling import resolve_device, set_threads
from worldmodels.registry import FAMILIES, Pretrained, load


@dataclass
class PlanConfig:
    checkpoint: str = arg("", "a run directory, an exported model directory or a shipped model name (required)")
    env: str = arg("", "env id; empty = the env the model was trained on")
    planner: str = arg("cem", "the planner searching the world model at every step", choices=tuple(PLANNERS))
    horizon: int = arg(12, "planning horizon H in model steps", minimum=1, maximum=1000)
    candidates: int = arg(100, "action sequences scored per iteration (per env)", minimum=1, maximum=65536)
    iterations: int = arg(3, "sample -> score -> refit iterations per action", minimum=1, maximum=1000)
    particles: int = arg(1, "model samples per candidate; its score is their mean return", minimum=1, maximum=1024)
    elites: Optional[int] = arg(None, "cem / icem: sequences the distribution is refit to (None = candidates / 10)",
                                minimum=1, maximum=65536)
    gamma: float = arg(0.99, "discount of the planned return", above=0.0, maximum=1.0)
    # lambda is in return units: returns of 10**4 per episode exist, a larger lambda weighs all alike
    temperature: float = arg(1.0, "mppi: lambda of the return weights exp((R - max R) / lambda)", above=0.0,
                             maximum=10_000.0)
    # iCEM uses 0-4; past 10 the noise is one slow drift
    beta: float = arg(2.0, "icem: exponent of the coloured noise 1 / f^beta (0 = white)", minimum=0.0, maximum=10.0)
    value: bool = arg(False, "add gamma^H V(s_H) from the model's critic (Dreamer models) to every planned return")
    prior_candidates: int = arg(0, "sequences of the model's own policy (actor / C) added to the candidates",
                                minimum=0, maximum=65536)
    episodes: int = arg(10, "evaluation episodes of the planner and of random", minimum=1, maximum=10**6)
    seed: int = arg(10_000, "episode j resets with seed + j; the random baseline uses the same seeds", minimum=0,
                    maximum=2**32 - 1)
    num_envs: int = arg(4, "parallel envs stepped as one vector env (planned as one batch)", minimum=1, maximum=1024)
    max_episode_steps: Optional[int] = arg(None, "env option: truncate episodes after this many agent steps "
                                                 "(None = the model's / env default)", minimum=1, maximum=10**7)
    frameskip: Optional[int] = arg(None, "env option: agent step = this many env steps (None = the model's / env "
                                         "default)", minimum=1, maximum=1000)
    device: str = arg("auto", "torch device of the model and the planner: auto, cpu or cuda")
    threads: str = threads_arg("1", "1 keeps a small shared CPU from thrashing (measured: 36x faster planning than 2 "
                                    "threads on a busy 2-core machine)")
    allow_unverified: bool = allow_unverified_arg()
    out: str = arg("", "eval.json path; empty = RUN_DIR/eval-plan-<PLANNER>.json (shipped model: ./ instead; for "
                       "another --env than the model's: eval-plan-<PLANNER>-<ENV>.json there)",
                  check=lambda c: file_problem(c.out) if c.out else None)  # refused before any episode is played
    tensorboard: bool = arg(True, "log KPIs to tb/plan-<PLANNER>/ next to the eval.json: open-loop error by horizon "
                                  "(and PETS' ensemble disagreement), planning ms per action, return vs env steps")


CONFIG = PlanConfig


def build_planner(config: PlanConfig, model: Pretrained) -> SamplingPlanner:
    """The configured planner over ``model``'s action space, with its critic / policy prior if asked for."""
    value = prior = None
    if config.value:
        critic = model.components.get("critic")
        if critic is None:
            raise ValueError(f"--value needs a critic for V(s_H); {model.path} is a {model.family} model with "
                             f"components {sorted(model.components)} (use a dreamer model, or drop --value)")
        value = lambda feature: critic.mean(critic(feature))  # noqa: E731 - (R, F) -> (R,)
    if config.prior_candidates:
        prior = FAMILIES[model.family].head(model.components, model.config, sample=True)
        if prior is None:
            raise ValueError(f"--prior-candidates needs the model's own policy; {model.path} has none (components "
                             f"{sorted(model.components)}); use --prior-candidates 0")
    common = dict(horizon=config.horizon, candidates=config.candidates, iterations=config.iterations,
                  particles=config.particles, gamma=config.gamma, value=value, prior=prior,
                  prior_candidates=config.prior_candidates, seed=config.seed)
    own = {"cem": {"elites": config.elites}, "icem": {"elites": config.elites, "beta": config.beta},
           "mppi": {"temperature": config.temperature}, "shooting": {}}[config.planner]
    return PLANNERS[config.planner](model.action_spec, **common, **own)


def run(config: PlanConfig) -> dict:
    """Load the model, plan in its world model through the env driver next to random, write ``eval.json``."""
    if not config.checkpoint:
        raise ValueError("--checkpoint is required: a run directory, an exported model or a shipped name "
                         "(see `wm checkpoints`)")
    if config.elites is not None and config.elites > config.candidates:
        raise ValueError(f"--elites {config.elites} exceeds --candidates {config.candidates}; choose elites <= candidates")
    register_toy_envs()
    set_threads(config.threads)
    device = resolve_device(config.device)
    try:
        model = load(config.checkpoint, device, allow_unverified=config.allow_unverified)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"--checkpoint {config.checkpoint!r} is not a `wm worldmodels`, `wm dreamer` or "
                                f"`wm pets` run, an exported model or a shipped name: {error}") from None
    if model.world_model is None:
        raise FileNotFoundError(f"--checkpoint {config.checkpoint!r}: no world model to plan in yet (components "
                                f"{sorted(model.components)}); a World Models run needs its mdnrnn/ stage")
    planner = build_planner(config, model)
    torch.manual_seed(config.seed)  # the world model's own sampling (MDN, RSSM prior) during planning
    policy = PlannerPolicy(model.world_model, planner, device=device)
    recorder = EpisodeRecorder()  # the planner's first complete episodes, for the open-loop KPI
    record = evaluate_model(model, episodes=config.episodes, seed=config.seed, env_id=config.env,
                            num_envs=config.num_envs, max_episode_steps=config.max_episode_steps,
                            frameskip=config.frameskip, device=device, policy=policy, hooks=[recorder])
    settings = {"planner": config.planner, "horizon": config.horizon, "candidates": config.candidates,
                "iterations": config.iterations, "particles": config.particles, "gamma": config.gamma,
                "value": config.value, "prior_candidates": config.prior_candidates,
                "elites": getattr(planner, "elites", None), "temperature": getattr(planner, "temperature", None),
                "beta": getattr(planner, "beta", None), "family": model.family, "checkpoint": config.checkpoint,
                "plan_calls": planner.calls, "actions_planned": planner.actions,
                "ms_per_action": 1000.0 * planner.seconds / max(planner.actions, 1),
                "ms_per_call": 1000.0 * planner.seconds / max(planner.calls, 1)}
    record["planner"] = settings
    record["open_loop"] = open_loop_errors(model.world_model, recorder.episodes, config.horizon)
    # Another env's plan goes next to the model's own (eval-plan-cem-<ENV>.json, tb/plan-cem-<ENV>), never over it.
    default = eval_path(model, f"eval-plan-{config.planner}", config.env)
    path = Path(config.out) if config.out else default
    write_eval(path, record)
    if config.tensorboard:
        _log_kpis(path.parent / "tb" / default.stem.removeprefix("eval-"), model, record)
    print(f"wm plan: {config.planner} {summary_line(record)}; "
          f"{settings['ms_per_action']:.1f} ms planning per action -> {path}")
    return record


def _log_kpis(logdir: Path, model: Pretrained, record: dict) -> None:
    """The planner run's KPIs at x = the env steps the model was trained on (0 when its config does not say)."""
    from torch.utils.tensorboard import SummaryWriter  # deferred: tensorboard is slow to import, and optional

    env_steps = int((model.config.get("training_steps") or {}).get("env_steps", 0))
    with SummaryWriter(str(logdir)) as writer:
        log_return_vs_env_steps(writer, env_steps, record["return_mean"])
        log_planner_kpis(writer, env_steps, open_loop=record["open_loop"],
                         ms_per_action=record["planner"]["ms_per_action"])

