"""Decision fidelity (issue 28): is a policy that does better in a world model's dream better in the real env?

A world model is worth what the decisions made inside it are worth. For a set of named policies this measures
each one's mean return in the DREAM and in the REAL env on the same seeds, then how well the dream ranks them::

    real   episode j: reset(seed + j), the policy plays until the episode ends or H agent steps (the one
           Driver; the whole set in one vector env, each env seeded and played by its own policy: PolicyRows)
    dream  episode j: the SAME reset(seed + j) frame o_0, filtered: s_0 = observe(o_0); the policy then acts
           inside the model (WorldModel.imagine, the one latent loop) for at most H steps:

        k:      0           1           2                 H-1
        state:  s_0 -a_0->  s_1 -a_1->  s_2   ...   s_{H-1} -a_{H-1}-> s_H
        reward:             r_1         r_2                            r_H        predicted on arriving
        end:                d_1         d_2                            d_H        d_k = c_k < 0.5  ("threshold")
                                                                                  d_k = u_k < 1 - c_k  ("sample")
        alive_0 = 1,  alive_{k+1} = alive_k (1 - d_{k+1}),   return = sum_{k<H} alive_k r_{k+1}

    so the dream ends on the predicted termination and the reward of the step that ends it counts (the rule of the
    CMA-ES fitness, worldmodels.imagination.cmaes_dream). A policy acts on latents where it can (a ModelPolicy over
    this world model: its head on f_k = feature(s_k); a policy with ``latent_head(world_model)``; uniform random)
    and otherwise on decoded frames decode(s_k) (o_0 itself at k = 0).

Over the set (one mean per policy, ``n >= 3`` policies):

    spearman  Pearson correlation of the ranks of the dream means and of the real means; tied values share
              the mean of their ranks (Spearman 1904; with no ties it equals 1 - 6 sum d^2 / (n (n^2 - 1))).
              NaN when either side is constant (no ranking to compare).
    regret    real mean of the real-best policy - real mean of the dream-best one (>= 0; the mean over the
              dream-best policies when several tie): what choosing by the dream costs in the real env.

Randomness: the real episodes run from torch seed ``seed``, then the dreams of the whole set (one batch) from the
same seed, inside ``torch.random.fork_rng`` so the caller's stream is untouched: the same seeds give the same numbers.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping

import numpy as np
import torch

from worldmodels.core import LatentPolicy, Policy, WorldModel, index_state
from worldmodels.envs.factory import agent_frameskip, is_atari, registered_id, registry_spec
from worldmodels.envs.options import ATARI_MAX_EPISODE_FRAMES, EnvOptions, resolve_options
from worldmodels.envs.vizdoom import is_vizdoom, time_limit
from worldmodels.fidelity_real import play
from worldmodels.policies import ModelPolicy, PlannerPolicy, RandomPolicy
from worldmodels.progress import Progress

TERMINATIONS = ("threshold", "sample")
MIN_POLICIES = 3  # a rank correlation of two points is always +-1: it says nothing
DEFAULT_HORIZON = 1000  # agent steps, for an env that states no episode limit
SPEARMAN_TAG, REGRET_TAG = "kpi/decision_fidelity_spearman", "kpi/decision_fidelity_regret"


# ---------------------------------------------------------------------------------------------- statistics


def ranks(values: Any) -> np.ndarray:
    """1-based ranks of ``values (n,)``, ascending; tied values share the mean of the ranks they span."""
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="stable")
    out = np.empty(len(values))
    position = 0
    while position < len(values):
        end = position
        while end + 1 < len(values) and values[order[end + 1]] == values[order[position]]:
            end += 1
        out[order[position:end + 1]] = (position + end) / 2.0 + 1.0  # the mean of ranks position+1 .. end+1
        position = end + 1
    return out


def spearman(x: Any, y: Any) -> float:
    """Spearman's rank correlation of ``x (n,)`` and ``y (n,)`` (Pearson's r of their tie-averaged ranks).

    NaN when either side is constant, since there is then no ordering to agree with.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"spearman needs two equally long 1-D series of at least 2 values, got shapes {x.shape}, {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("spearman: the values must be finite")
    rx, ry = ranks(x) - (len(x) + 1) / 2.0, ranks(y) - (len(y) + 1) / 2.0  # centred: the mean rank is (n + 1) / 2
    denominator = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return float("nan") if denominator == 0 else float((rx * ry).sum() / denominator)


def regret(dream_means: Any, real_means: Any) -> float:
    """``max(real) - real[dream-best]``: the real return lost by picking the policy the dream ranks first.

    Several policies tied for the dream's best: the mean of their real returns (a uniform pick among them).
    """
    dream, real = np.asarray(dream_means, np.float64), np.asarray(real_means, np.float64)
    if dream.shape != real.shape or dream.ndim != 1 or len(dream) < 1:
        raise ValueError(f"regret needs two equally long 1-D series, got shapes {dream.shape}, {real.shape}")
    chosen = dream == dream.max()
    return float(real.max() - real[chosen].mean())


def standard_error(values: Any) -> float:
    """``std(ddof=1) / sqrt(n)`` of ``values (n,)``; NaN below two values."""
    values = np.asarray(values, np.float64)
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) >= 2 else float("nan")


# ---------------------------------------------------------------------------------------------- acting


def latent_head(policy: Any, world_model: WorldModel) -> LatentPolicy | None:
    """What ``policy`` acts with on ``world_model``'s features, or ``None`` when it needs (decoded) frames.

    A :class:`ModelPolicy` over this same world model acts with its head (its filter IS the model's state); a
    wrapper may say with ``latent_head(world_model)``; uniform random acts on features directly. A planner, a model
    policy over another world model or a sticky random policy gets decoded frames.
    """
    if isinstance(policy, ModelPolicy) and not isinstance(policy, PlannerPolicy):
        return policy.head if policy.world_model is world_model else None
    if hasattr(policy, "latent_head"):
        return policy.latent_head(world_model)
    # Uniform random acts alike on frames and features; a subclass that acts otherwise (sticky, hold) gets frames.
    uniform = isinstance(policy, RandomPolicy) and type(policy).act is RandomPolicy.act and not policy.acts_in_numpy
    return policy if uniform else None


def _groups(assignment: np.ndarray, count: int) -> list[tuple[int, torch.Tensor]]:
    """``(policy index, its rows (R,))`` for every policy that has rows in ``assignment (B,)``."""
    return [(p, torch.as_tensor(np.flatnonzero(assignment == p))) for p in range(count) if (assignment == p).any()]


# ---------------------------------------------------------------------------------------------- the dream


@torch.no_grad()
def dream(world_model: WorldModel, policies: list[Any], assignment: np.ndarray, first_obs: torch.Tensor, *,
          horizon: int, termination: str = "threshold", seed: int = 0, progress: bool = False) -> dict[str, np.ndarray]:
    """Dream one episode per start frame ``first_obs (N, H, W, C)``, row ``b`` played by ``policies[assignment[b]]``.

    Returns ``{"returns" (N,), "lengths" (N,)}``: the summed predicted reward while alive and the imagined steps
    lived (the dying step included; ``horizon`` when the model never ends the episode). See the module diagram.
    ``progress``: show the imagined steps with an ETA.
    """
    if termination not in TERMINATIONS:
        raise ValueError(f"termination must be one of {list(TERMINATIONS)}, got {termination!r}")
    if horizon < 1:
        raise ValueError(f"the dream horizon must be >= 1 step, got {horizon}")
    N = first_obs.shape[0]
    groups = _groups(np.asarray(assignment), len(policies))
    heads = {p: latent_head(policies[p], world_model) for p, _ in groups}
    carries: dict[int, Any] = {p: None for p, _ in groups}  # the frame policies' own state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ends = torch.Generator().manual_seed(seed + 1)  # the sampled ends: their own stream, drawn on the CPU
        _, state = world_model.observe(first_obs.unsqueeze(1), None, torch.ones(N, 1, dtype=torch.bool))  # s_0
        alive = torch.ones(N, dtype=torch.float64)  # alive_k
        total, lengths = torch.zeros(N, dtype=torch.float64), torch.zeros(N, dtype=torch.float64)
        shown = Progress("fidelity: dream", horizon, unit="step", enabled=progress)
        for k in range(horizon):
            feature = world_model.feature(state)  # (N, F)
            action = torch.zeros(N, world_model.action_spec.dim, device=feature.device)  # (N, A): a_k
            for p, rows in groups:
                rows = rows.to(feature.device)
                if heads[p] is not None:
                    chosen = heads[p].act_latent(feature[rows])
                else:  # a frame policy acts on the frame decoded from s_k (the real o_0 at k = 0)
                    frame = first_obs[rows] if k == 0 else world_model.decode(index_state(state, rows))
                    first = torch.full((len(rows),), k == 0, dtype=torch.bool, device=frame.device)
                    chosen, carries[p] = policies[p].act(frame, first, carries[p])
                action[rows] = chosen.to(action.device, action.dtype)
            step = world_model.imagine(state, action.unsqueeze(1), 1)  # s_k -a_k-> s_{k+1}: r_{k+1}, c_{k+1}
            state = step.state_steps[-1]
            reward, cont = step.reward[:, 0].double().cpu(), step.cont[:, 0].double().cpu()  # (N,)
            if termination == "threshold":
                done = (cont < 0.5).double()
            else:
                done = (torch.rand(N, generator=ends, dtype=torch.float64) < 1.0 - cont).double()
            total += alive * reward  # the step that ends the dream still pays
            lengths += alive
            alive = alive * (1.0 - done)
            shown.update(1, detail=f"{int(alive.sum())} of {N} dreams running")
            if not bool(alive.any()):
                break
        shown.close()
    return {"returns": total.numpy(), "lengths": lengths.numpy()}


def dream_returns(world_model: WorldModel, policy: Policy, first_obs: torch.Tensor, *, horizon: int,
                  termination: str = "threshold", seed: int = 0) -> dict[str, np.ndarray]:
    """:func:`dream` of one policy on every start frame ``(N, H, W, C)``."""
    return dream(world_model, [policy], np.zeros(first_obs.shape[0], np.int64), first_obs, horizon=horizon,
                 termination=termination, seed=seed)


# ---------------------------------------------------------------------------------------------- the measurement


def check_policies(policies: Mapping[str, Any]) -> None:
    """At least :data:`MIN_POLICIES` named policies, each with ``act``; a one-line ``ValueError`` otherwise."""
    if len(policies) < MIN_POLICIES:
        raise ValueError(f"decision fidelity ranks policies: give at least {MIN_POLICIES}, got {len(policies)} "
                         f"({', '.join(policies) or 'none'})")
    for name, policy in policies.items():
        if not hasattr(policy, "act"):
            raise ValueError(f"policy {name!r} is a {type(policy).__name__}, not a Policy with act(obs, is_first, state)")


def _number(value: float) -> float | None:
    """A JSON-safe float: NaN (an undefined statistic) becomes None."""
    return None if not math.isfinite(value) else float(value)


def decision_fidelity(world_model: WorldModel, policies: Mapping[str, Policy], make_env: Callable[[int], Any], *,
                      episodes: int, seed: int, horizon: int, termination: str = "threshold", num_envs: int = 40,
                      device: torch.device | str = "cpu", progress: bool = False) -> dict[str, Any]:
    """Each policy's dream and real returns on episodes ``seed .. seed + episodes - 1``, and the set's statistics.

    ``make_env(num_envs)`` builds the real vector env (its observations are the model's); every policy's episodes
    share it, ``num_envs`` (policy, episode) jobs at a time (:func:`worldmodels.fidelity_real.play`). The numbers
    are a function of the seed, the set and ``num_envs``. Returns the report::

        {"episodes", "seed", "horizon", "termination",
         "policies": {name: {"dream_mean", "dream_se", "real_mean", "real_se", "gap" (dream - real),
                             "dream_returns", "real_returns", "dream_lengths"}},
         "order" (the names as given: JSON files sort keys), "spearman", "regret", "dream_best", "real_best"}
                                                                    (None where a statistic is undefined)
    """
    check_policies(policies)
    if termination not in TERMINATIONS:
        raise ValueError(f"termination must be one of {list(TERMINATIONS)}, got {termination!r}")
    if episodes < 1 or horizon < 1:
        raise ValueError(f"episodes and horizon must be >= 1, got {episodes} and {horizon}")
    names, acting = list(policies), list(policies.values())
    jobs = [(p, j) for j in range(episodes) for p in range(len(names))]  # episode-major: every wave mixes the set
    env = make_env(min(num_envs, len(jobs)))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the models' own sampling while they filter the real frames
            real, first = play(env, acting, jobs, seed=seed, horizon=horizon, device=device, progress=progress)
    finally:
        env.close()
    assignment = np.array([p for p, _ in jobs])
    dreamt = dream(world_model, acting, assignment, first.to(device), horizon=horizon, termination=termination,
                   seed=seed, progress=progress)
    rows: dict[str, dict[str, Any]] = {}
    for p, name in enumerate(names):
        mine = assignment == p
        dream_p, real_p, lengths = dreamt["returns"][mine], real[mine], dreamt["lengths"][mine]
        for where, values in (("dream", dream_p), ("real env", real_p)):
            if not np.isfinite(values).all():
                raise ValueError(f"decision fidelity: policy {name!r} has a non-finite return in the {where}; the "
                                 "world model (or the env) went non-finite")
        rows[name] = {"dream_mean": float(dream_p.mean()), "dream_se": _number(standard_error(dream_p)),
                      "real_mean": float(real_p.mean()), "real_se": _number(standard_error(real_p)),
                      "gap": float(dream_p.mean() - real_p.mean()), "dream_returns": dream_p.tolist(),
                      "real_returns": real_p.tolist(), "dream_lengths": lengths.tolist()}
    return {"episodes": episodes, "seed": seed, "horizon": horizon, "termination": termination, "policies": rows,
            "order": names, **set_statistics(rows)}


def set_statistics(rows: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """``spearman``, ``regret``, ``dream_best`` and ``real_best`` of per-policy ``dream_mean`` / ``real_mean``."""
    names = list(rows)
    dream_means = np.array([rows[n]["dream_mean"] for n in names])
    real_means = np.array([rows[n]["real_mean"] for n in names])
    return {"spearman": _number(spearman(dream_means, real_means)), "regret": regret(dream_means, real_means),
            "dream_best": names[int(dream_means.argmax())], "real_best": names[int(real_means.argmax())]}


# ---------------------------------------------------------------------------------------------- reporting


def metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The scalars a model's ``config.json`` ``metrics`` keeps (Spearman left out when undefined)."""
    out = {REGRET_TAG: round(float(report["regret"]), 4)}
    if report.get("spearman") is not None:
        out[SPEARMAN_TAG] = round(float(report["spearman"]), 4)
    return out


def log_fidelity_kpis(writer: Any, step: int, report: Mapping[str, Any]) -> None:
    """``kpi/decision_fidelity_spearman`` and ``_regret`` at ``step`` (the env steps the model was trained on)."""
    for tag, value in metrics(report).items():
        writer.add_scalar(tag, value, step)


def _cell(mean: float, se: float | None) -> str:
    return f"{mean:.1f}" if se is None else f"{mean:.1f} ± {se:.1f}"


def fidelity_table(report: Mapping[str, Any]) -> str:
    """Markdown: one row per policy (dream and real mean ± standard error, gap), then Spearman and regret."""
    lines = ["| policy | dream return | real return | gap (dream - real) |", "|---|---|---|---|"]
    for name in report.get("order", list(report["policies"])):
        row = report["policies"][name]
        lines.append(f"| {name} | {_cell(row['dream_mean'], row['dream_se'])} | {_cell(row['real_mean'], row['real_se'])}"
                     f" | {row['gap']:+.1f} |")
    rho = report.get("spearman")
    lines += ["", f"Spearman rank correlation (dream vs real means): **{'undefined' if rho is None else f'{rho:.3f}'}**; "
              f"regret of picking the dream's best ({report['dream_best']}) over the real best ({report['real_best']}): "
              f"**{report['regret']:.1f}**."]
    return "\n".join(lines)


def card_section(report: Mapping[str, Any]) -> str:
    """A model card's ``## Decision fidelity`` section (``wm export`` / ``wm remeasure --fidelity-episodes N``)."""
    return f"""## Decision fidelity

Does a policy that does better in this model's dream do better in the real env? Each policy played
{report['episodes']} real episodes (seeds {report['seed']}-{report['seed'] + report['episodes'] - 1}) and dreamt one episode
from the first frame of each of the same episodes, for at most {report['horizon']} agent steps, the dream ending
on the model's predicted termination ({report['termination']}). `wm fidelity` (docs/fidelity.md) says how the
policies are built. ± is the standard error over episodes.

{fidelity_table(report)}
"""


def default_horizon(env_id: str, env_options: Mapping[str, Any]) -> int:
    """The env's own episode limit in agent steps (``max_episode_steps``, VizDoom's paper limit, ALE's 108,000
    frames, the registered limit), else :data:`DEFAULT_HORIZON`: a dream past it would count steps no real
    episode can reach."""
    names = {f.name for f in dataclasses.fields(EnvOptions)} - {"image_size"}
    options = resolve_options(env_options.get("image_size", 64), {k: v for k, v in env_options.items() if k in names})
    if options.max_episode_steps is not None:
        return int(options.max_episode_steps)
    frameskip = agent_frameskip(env_id, options)
    if is_vizdoom(env_id) and time_limit(env_id, None):
        return int(time_limit(env_id, None))
    if is_atari(env_id):
        return ATARI_MAX_EPISODE_FRAMES // frameskip
    limit = registry_spec(registered_id(env_id)).max_episode_steps
    return int(limit) // frameskip if limit else DEFAULT_HORIZON


MODEL_KEY = "decision_fidelity"  # config.json key of the last measurement (wm export / wm remeasure)


def add_to_model_config(model_config: dict, report: dict) -> dict:
    """``model_config`` (a config.json dict) with the report under :data:`MODEL_KEY` and its scalars in ``metrics``."""
    return {**model_config, "metrics": {**model_config.get("metrics", {}), **metrics(report)}, MODEL_KEY: report}


def card_part(model_config: dict) -> str:
    """The card's decision-fidelity section for a config.json dict, or ``""`` when it was never measured."""
    return "\n" + card_section(model_config[MODEL_KEY]) if MODEL_KEY in model_config else ""
