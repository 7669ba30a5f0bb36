"""The real half of decision fidelity: a whole policy set playing seeded episodes in ONE vector env.

Job ``(p, j)`` is policy ``p`` playing the episode that starts from ``reset(seed + j)``, cut after ``horizon``
agent steps. Envs are slots: when a slot's episode ends (or is cut), the next job starts there at once with a
seeded masked reset (:meth:`~worldmodels.driver.Driver.reset_envs`), so no env idles while the longest episode of
a wave plays on (TakeCover: 200-step random episodes next to 2,100-step ones). One env step serves every policy;
on shared CPU cores a step of 35 envs costs little more than a step of 5.

Returns per job, as :func:`~worldmodels.evaluation.run_episodes` counts them::

    an episode of L rows (L - 1 actions)    return = reward[1] + ... + reward[L-1]
    cut after H actions (L - 1 > H)         return = reward[1] + ... + reward[H]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from worldmodels.core import PolicyState
from worldmodels.driver import Driver
from worldmodels.progress import Progress


class PolicyRows:
    """Several policies in one batch: row ``b`` is played by ``policies[assignment[b]]`` (a Policy over ``E`` rows).

    ``assignment (E,)`` may change between steps (a slot starting another job, with ``is_first`` set there). Each
    policy keeps its carry for all ``E`` rows and gets its own rows' slice, so its carry must be ``None`` or a dict
    of batch-major tensors (every model policy's, random's and epsilon-random's is).
    """

    def __init__(self, policies: list[Any], num_rows: int) -> None:
        self.policies, self.action_spec = policies, policies[0].action_spec
        self.assignment = np.zeros(num_rows, np.int64)
        self.carries: list[dict[str, torch.Tensor] | None] = [None] * len(policies)

    def initial(self, batch_size: int) -> PolicyState:
        return None

    def act(self, obs: torch.Tensor, is_first: torch.Tensor, state: PolicyState) -> tuple[torch.Tensor, PolicyState]:
        if state is None:  # the driver's fresh carry: every policy starts over
            self.carries = [None] * len(self.policies)
        action = torch.zeros(obs.shape[0], self.action_spec.dim, device=obs.device)  # (E, A)
        for p, policy in enumerate(self.policies):
            rows = torch.as_tensor(np.flatnonzero(self.assignment == p), device=obs.device)  # (R,)
            if len(rows) == 0:
                continue
            carry = self.carries[p]
            mine = None if carry is None else {key: value[rows] for key, value in carry.items()}
            chosen, new = policy.act(obs[rows], is_first[rows], mine)
            action[rows] = chosen.to(action.device, action.dtype)
            if new is not None:
                if not isinstance(new, dict):
                    raise ValueError(f"policy {p} ({type(policy).__name__}) carries a {type(new).__name__}; playing "
                                     "a set in one env needs None or a dict of batch-major tensors")
                if carry is None:
                    carry = {key: value.new_zeros(obs.shape[0], *value.shape[1:]) for key, value in new.items()}
                for key, value in new.items():
                    carry[key][rows] = value
                self.carries[p] = carry
        return action, True  # the carries live here; any non-None state tells the next call to keep them


def play(env: Any, policies: list[Any], jobs: list[tuple[int, int]], *, seed: int, horizon: int,
         device: torch.device | str = "cpu", progress: bool = False) -> tuple[np.ndarray, torch.Tensor]:
    """Play every job (see the module doc) -> returns ``(J,)`` and each job's first observation ``(J, ...)``.

    Slots past the last job play on unrecorded. ``progress``: show the episodes played with an ETA.
    """
    E, J = env.num_envs, len(jobs)
    returns, firsts = np.zeros(J), [None] * J
    total, steps = np.zeros(E), np.zeros(E, np.int64)
    slot_job = np.full(E, -1)  # the job each slot plays, -1: none (idle)
    acting = PolicyRows(policies, E)
    driver = Driver(env, acting, device=device)
    shown = Progress("fidelity: real episodes", J, unit="episode", enabled=progress)
    next_job = min(E, J)
    slot_job[:next_job] = np.arange(next_job)
    start = [jobs[min(s, J - 1)] for s in range(E)]  # idle slots replay the last job's start, never recorded
    acting.assignment[:] = [p for p, _ in start]
    driver.reset(seed=[seed + j for _, j in start])
    for s in range(next_job):
        firsts[s] = np.array(driver.current["obs"][s])
    while (slot_job >= 0).any():
        rows = driver.step()
        active = slot_job >= 0
        total += np.where(active, rows["reward"].astype(np.float64), 0.0)
        steps += 1
        ended = active & (rows["terminated"] | rows["truncated"])
        cut = active & ~ended & (steps >= horizon)
        # cut at the horizon: the reward of the last executed action arrived with the current row
        total += np.where(cut, driver.current["reward"].astype(np.float64), 0.0)
        freed = np.flatnonzero(ended | cut)
        for s in freed:
            returns[slot_job[s]] = total[s]
            slot_job[s] = -1
        shown.update(len(freed))
        refill = freed[:max(0, J - next_job)]
        if len(refill):
            slot_job[refill] = np.arange(next_job, next_job + len(refill))
            next_job += len(refill)
            acting.assignment[refill] = [jobs[j][0] for j in slot_job[refill]]
            mask = np.zeros(E, bool)
            mask[refill] = True
            driver.reset_envs(mask, [seed + jobs[j][1] for j in slot_job[refill]])  # is_first there: carries restart
            for s in refill:
                firsts[slot_job[s]] = np.array(driver.current["obs"][s])
            total[refill], steps[refill] = 0.0, 0
    shown.close()
    return returns, torch.as_tensor(np.stack(firsts))


def start_frames(env: Any, *, episodes: int, seed: int) -> torch.Tensor:
    """The first observation of episode ``j = 0 .. episodes - 1``, ``(episodes, ...)``, reset as
    :func:`~worldmodels.evaluation.run_episodes` resets it: waves of ``num_envs``, ``reset(seed=seed + wave_start)``."""
    frames = []
    for wave_start in range(0, episodes, env.num_envs):
        obs, _ = env.reset(seed=seed + wave_start)  # sub-env i -> seed + wave_start + i
        frames.append(np.asarray(obs)[:min(env.num_envs, episodes - wave_start)])
    return torch.as_tensor(np.concatenate(frames))
