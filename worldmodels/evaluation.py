"""Evaluation on the one env driver: any policy vs uniform random on the SAME seeds, one ``eval.json`` schema.

``run_episodes`` plays exactly ``episodes`` episodes in waves of ``num_envs``; episode ``j`` starts from
``reset(seed=seed + j)``, so two policies run with the same ``seed`` face the same starts. Sub-envs past
the last episode of the last wave play on and are dropped. ``eval.json``::

    {"env", "seed", "episodes", "returns", "return_mean", "return_std",
     "random_returns", "random_mean", "random_std", ...extra keys of the caller}
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
import torch

from worldmodels.atari_scores import game_of, hns
from worldmodels.config import WriteError, file_problem, writing
from worldmodels.core import Policy
from worldmodels.driver import Driver
from worldmodels.envs.spaces import ActionSpec
from worldmodels.finite import NonFiniteError
from worldmodels.policies import RandomPolicy
from worldmodels.progress import Progress

EVAL_KEYS = ("env", "seed", "episodes", "returns", "return_mean", "return_std",
             "random_returns", "random_mean", "random_std")


def run_episodes(env: gym.vector.VectorEnv, policy: Policy | Callable[[np.ndarray], Policy], *, episodes: int,
                 seed: int, max_steps: int | None = None, device: torch.device | str = "cpu",
                 hooks: Sequence[Any] = (), progress: str | None = None) -> np.ndarray:
    """``(episodes,)`` undiscounted returns. ``policy`` is a Policy, or ``make(job_ids (E,)) -> Policy`` per wave.

    ``max_steps`` cuts every episode after that many agent steps (its return so far counts). ``hooks`` are
    driver hooks (:class:`~worldmodels.driver.DriverHook`) that see every row played, e.g. to score a model on them.
    ``progress`` names the stage of a progress display of the episodes, with an ETA (``None``: none).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    num_envs = env.num_envs
    returns = np.zeros(episodes, dtype=np.float64)
    shown = Progress(progress or "evaluate", episodes, unit="episode", enabled=progress is not None)
    for wave_start in range(0, episodes, num_envs):
        jobs = np.minimum(np.arange(wave_start, wave_start + num_envs), episodes - 1)  # (E,)
        wave_policy = policy(jobs) if callable(policy) and not hasattr(policy, "act") else policy
        driver = Driver(env, wave_policy, hooks=hooks, device=device)
        driver.reset(seed=seed + wave_start)  # sub-env i -> seed + wave_start + i
        total = np.zeros(num_envs, dtype=np.float64)
        finished = np.zeros(num_envs, dtype=bool)
        steps = 0
        while not finished.all() and (max_steps is None or steps < max_steps):
            rows = driver.step()
            total += np.where(finished, 0.0, rows["reward"].astype(np.float64))
            finished |= rows["terminated"] | rows["truncated"]
            steps += 1
        if not finished.all():  # cut by max_steps: the reward of the last executed step has not been recorded
            total += np.where(finished, 0.0, driver.current["reward"].astype(np.float64))
        count = min(num_envs, episodes - wave_start)
        returns[wave_start:wave_start + count] = total[:count]
        shown.update(count, detail=f"mean return {returns[:wave_start + count].mean():.2f}")
    shown.close()
    return returns


def evaluate_against_random(env: gym.vector.VectorEnv, policy: Policy, *, env_id: str, episodes: int, seed: int,
                            max_steps: int | None = None, device: torch.device | str = "cpu",
                            random_returns: np.ndarray | None = None, hooks: Sequence[Any] = (),
                            progress: bool = False) -> dict[str, Any]:
    """The agent and a uniform random policy on the same seeds -> the ``eval.json`` dict (``hooks``: the agent's).

    ``progress``: show both policies' episodes with an ETA (stages ``evaluate agent``, ``evaluate random``).
    Torch's global RNG is seeded with ``seed`` for the agent's episodes (and restored after), so a policy that samples
    from it (a sampling actor, a planner's prior candidates) plays the same episodes whether it is evaluated at the
    end of its training run or after loading: the record depends on the evaluation seed, not on how the process
    got here.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        returns = run_episodes(env, policy, episodes=episodes, seed=seed, max_steps=max_steps, device=device,
                               hooks=hooks, progress="evaluate agent" if progress else None)
    if random_returns is None:
        random = RandomPolicy(ActionSpec.from_space(env.single_action_space), seed=seed)
        random_returns = run_episodes(env, random, episodes=episodes, seed=seed, max_steps=max_steps,
                                      progress="evaluate random" if progress else None)
    return eval_record(env_id=env_id, seed=seed, returns=returns, random_returns=random_returns)


def eval_record(*, env_id: str, seed: int, returns: Any, random_returns: Any, **extra: Any) -> dict[str, Any]:
    """The ``eval.json`` dict; a non-finite return is a one-line :class:`~worldmodels.finite.NonFiniteError`, so
    no "agent nan ± nan" is ever printed or written."""
    returns, random_returns = np.asarray(returns, np.float64), np.asarray(random_returns, np.float64)
    for who, values in (("agent", returns), ("random policy", random_returns)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise NonFiniteError(f"evaluation on {env_id}: the {who}'s return of episode {int(bad[0])} is "
                                 f"{values[bad[0]]}; no eval.json was written (the env's rewards or the model "
                                 "went non-finite)")
    record = {"env": env_id, "seed": int(seed), "episodes": int(len(returns)),
              "returns": returns.tolist(), "return_mean": float(returns.mean()), "return_std": float(returns.std()),
              "random_returns": random_returns.tolist(), "random_mean": float(random_returns.mean()),
              "random_std": float(random_returns.std())}
    record.update(extra)
    return record


def write_eval(path: str | Path, record: dict[str, Any]) -> Path:
    """Atomically write an ``eval.json`` (temp file beside it, fsync, rename); checks the schema's keys.

    A directory at ``path`` or a file above it is a one-line :class:`~worldmodels.config.WriteError`, and no temp
    file is left behind whatever fails.
    """
    missing = [k for k in EVAL_KEYS if k not in record]
    if missing:
        raise ValueError(f"eval record lacks {missing}; an eval.json holds {list(EVAL_KEYS)}")
    path = Path(path)
    problem = file_problem(str(path))
    if problem:
        raise WriteError(f"{path} {problem}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "x") as handle:  # mode from the umask, as a plain write (mkstemp's would be 0600)
                json.dump(record, handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return path


def margin_in_standard_errors(record: dict[str, Any]) -> float:
    """Mean paired difference agent - random over the same seeds, in standard errors of that mean.

    ``(mean(d) / (std(d, ddof=1) / sqrt(n)))`` with ``d_j = return_j - random_j``: the margin issue 11 asks to be
    >= 3 (a random policy matches random within about 2 SE 95% of the time). NaN below two episodes; +-inf
    when every difference is equal and non-zero.
    """
    d = np.asarray(record["returns"], dtype=np.float64) - np.asarray(record["random_returns"], dtype=np.float64)
    if d.size < 2:
        return float("nan")
    se = d.std(ddof=1) / np.sqrt(d.size)
    if se == 0:
        return 0.0 if d.mean() == 0 else float(np.sign(d.mean()) * np.inf)
    return float(d.mean() / se)


def margin_words(record: dict[str, Any], *, unit: str = "SE") -> str:
    """``margin +5.1 SE``, or ``one episode: no margin`` (a paired standard error needs two episodes)."""
    if len(record["returns"]) < 2:
        return "one episode: no margin"
    return f"margin {margin_in_standard_errors(record):+.1f} {unit}"


def hns_words(record: dict[str, Any]) -> str:
    """``HNS 2.075`` (the agent's mean, human-normalised: 0 random, 1 human) for an Atari-100k game, else ``""``."""
    game = game_of(record["env"])
    return "" if game is None else f"HNS {hns(game, record['return_mean']):.3f}"


def _episodes(record: dict[str, Any]) -> str:
    return "1 episode" if record["episodes"] == 1 else f"{record['episodes']} episodes"


def result_table(record: dict[str, Any]) -> str:
    """The agent-vs-random table a training command ends with (mean ± std, episodes, margin in SE)."""
    rows = [f"{record['env']}: {_episodes(record)}, the same seeds for both policies",
            f"  {'policy':<8}{'mean':>10}{'std':>10}",
            f"  {'agent':<8}{record['return_mean']:>10.2f}{record['return_std']:>10.2f}",
            f"  {'random':<8}{record['random_mean']:>10.2f}{record['random_std']:>10.2f}",
            f"  {margin_words(record, unit='standard errors of the paired difference')}"]
    if hns_words(record):
        rows.append(f"  agent {hns_words(record)} (human-normalised: 0 = random, 1 = human; Atari-100k scores)")
    if record["return_mean"] < record["random_mean"]:
        rows.append("  WARNING: the agent is worse than random")
    return "\n".join(rows)


def summary_line(record: dict[str, Any]) -> str:
    """``agent 12.3 ± 4.5 vs random 0.1 ± 1.2 (10 episodes, same seeds; margin +5.1 SE, env X)``; warns when worse."""
    line = (f"agent {record['return_mean']:.2f} ± {record['return_std']:.2f} vs random "
            f"{record['random_mean']:.2f} ± {record['random_std']:.2f} ({_episodes(record)}, same seeds; "
            f"{margin_words(record)}, {record['env']}" + (f", {hns_words(record)}" if hns_words(record) else "") + ")")
    if record["return_mean"] < record["random_mean"]:
        line += " -- WARNING: the agent is worse than random"
    return line
