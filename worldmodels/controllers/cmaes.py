"""CMA-ES over controller parameters (Hansen 2016; Ha & Schmidhuber 2018, Sec. 2.3 / A.3), via the ``cma`` library.

Each generation: ``ask`` P candidates, evaluate all of them in ONE batched call of the
``fitness`` function (``(P, N)`` -> ``(P,)`` mean return, higher is better), ``tell`` the
NEGATED fitness (``cma`` minimises).

Resume: the internal resume file ``es_state.npz`` + ``es_state.json`` holds the
distribution mean, step size sigma, generation and the best parameters so far -- never a
pickled ``cma`` object (pickles are unsafe to exchange). On resume CMA-ES RESTARTS from
that mean and sigma with an identity covariance: the learned covariance is lost, which
costs a few generations of adaptation but keeps every file plain data.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Callable

# cma warns on import when matplotlib is absent; its plotting is never used here, so the warning is noise.
warnings.filterwarnings("ignore", message="Could not import matplotlib", category=UserWarning)
import cma  # noqa: E402
import numpy as np
import torch

from worldmodels.config import save_json_atomic, writing
from worldmodels.finite import check_finite
from worldmodels.progress import Progress

Fitness = Callable[[torch.Tensor], torch.Tensor]
"""``fitness(params (P, N) float32) -> (P,)`` mean return per candidate (higher is better)."""


def _save_state(directory: Path, *, mean: np.ndarray, sigma: float, generation: int, best_params: np.ndarray,
                best_fitness: float, history: list[dict]) -> None:
    tmp = directory / ".es_state.tmp.npz"
    with writing(directory / "es_state.npz"):  # a full disk: one line naming the file
        np.savez(tmp, mean=mean, best_params=best_params)
        os.replace(tmp, directory / "es_state.npz")
    save_json_atomic(directory / "es_state.json", {"sigma": sigma, "generation": generation,
                                                    "best_fitness": best_fitness, "history": history})


def load_state(directory: str | Path) -> dict | None:
    """The resume state in ``directory``, or ``None`` when there is none."""
    directory = Path(directory)
    if not (directory / "es_state.npz").exists() or not (directory / "es_state.json").exists():
        return None
    arrays = np.load(directory / "es_state.npz", allow_pickle=False)
    meta = json.loads((directory / "es_state.json").read_text())
    return {"mean": arrays["mean"], "best_params": arrays["best_params"], **meta}


def train_cmaes(
    fitness: Fitness,
    num_params: int,
    *,
    generations: int,
    population: int = 64,
    sigma0: float = 0.1,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    log: Callable[[int, dict], None] | None = None,
    progress: bool = False,
) -> dict:
    """Run (or resume) CMA-ES for ``generations`` total generations.

    ``log(generation, record)`` sees every generation's record; ``progress`` shows the generations with an ETA and
    the latest best / mean / sigma (:class:`~worldmodels.progress.Progress`). Returns ``{"best_params" (N,), "best_fitness", "mean" (N,), "generation", "history"}``;
    ``best_params`` is the best single candidate seen (its fitness is a noisy estimate, so
    callers re-evaluate it against ``mean`` with more repeats before trusting it).
    """
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else None
    state = load_state(directory) if directory is not None else None
    if state is not None:
        mean, sigma, generation = state["mean"], float(state["sigma"]), int(state["generation"])
        best_params, best_fitness, history = state["best_params"], float(state["best_fitness"]), list(state["history"])
    else:
        mean, sigma, generation = np.zeros(num_params), sigma0, 0
        best_params, best_fitness, history = np.zeros(num_params), -float("inf"), []
    if mean.shape != (num_params,):
        raise ValueError(f"resume state holds {mean.shape[0]} parameters, the controller has {num_params}; "
                         f"delete {directory} to start over")
    es = cma.CMAEvolutionStrategy(mean, sigma, {"popsize": population, "seed": seed + generation + 1, "verbose": -9})
    shown = Progress("cma-es", generations, unit="generation", initial=min(generation, generations), enabled=progress)
    while generation < generations:
        began = time.perf_counter()
        solutions = es.ask()  # P arrays of (N,)
        params = torch.as_tensor(np.stack(solutions), dtype=torch.float32, device=device)  # (P, N)
        scores = fitness(params).double().cpu().numpy()  # (P,) one host transfer per generation
        # A NaN fitness (a diverged V or M) would make every candidate "equal" and CMA-ES wander on silently.
        check_finite({"fitness": torch.from_numpy(scores)}, where=f"controller (CMA-ES) generation {generation + 1}",
                     hint="the world model it dreams in is probably diverged")
        es.tell(solutions, (-scores).tolist())  # cma minimises
        generation += 1
        best = int(scores.argmax())
        if scores[best] > best_fitness:
            best_fitness, best_params = float(scores[best]), np.asarray(solutions[best], dtype=np.float64)
        record = {"generation": generation, "best": float(scores.max()), "mean": float(scores.mean()),
                  "worst": float(scores.min()), "sigma": float(es.sigma), "best_ever": best_fitness,
                  "seconds": time.perf_counter() - began}
        history.append(record)
        if log is not None:
            log(generation, record)
        shown.set(generation, detail=f"best {record['best']:.3f} mean {record['mean']:.3f} sigma {record['sigma']:.3f}")
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            _save_state(directory, mean=np.asarray(es.mean), sigma=float(es.sigma), generation=generation,
                        best_params=best_params, best_fitness=best_fitness, history=history)
    shown.close()
    return {"best_params": np.asarray(best_params), "best_fitness": best_fitness, "mean": np.asarray(es.mean),
            "generation": generation, "history": history}
