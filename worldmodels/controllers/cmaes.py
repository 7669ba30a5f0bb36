"""CMA-ES over controller parameters (Hansen 2016; Ha & Schmidhuber 2018, Sec. 2.3 / A.3), via the ``cma`` library.

Each generation: ``ask`` P candidates, evaluate all of them in ONE batched call of the
``fitness`` function (``(P, N)`` -> ``(P,)`` mean return, higher is better), ``tell`` the
NEGATED fitness (``cma`` minimises).

Resume: the internal resume file ``es_state.npz`` + ``es_state.json`` holds every generation's
fitness ``(G, P)``, the distribution mean, step size sigma, generation and the best parameters so far --
never a pickled ``cma`` object (pickles are unsafe to exchange). Every random draw of generation ``g``
is a pure function of ``(seed, g)``: ``numpy``'s global generator (the one ``cma`` samples with) is
reseeded before ``ask`` and ``tell``, torch's before the fitness. So a resume REPLAYS the run: a fresh
``cma`` object asks the same candidates again and is told the stored fitness, generation by generation,
which rebuilds its whole state (covariance, evolution paths) bit for bit without evaluating anything,
and the resumed run goes on exactly as an uninterrupted one. (A state file without the fitness, from
before it was kept, restarts from its mean and sigma with an identity covariance.)
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
                best_fitness: float, history: list[dict], fitness: np.ndarray) -> None:
    tmp = directory / ".es_state.tmp.npz"
    with writing(directory / "es_state.npz"):  # a full disk: one line naming the file
        np.savez(tmp, mean=mean, best_params=best_params, fitness=fitness)
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
    fitness = arrays["fitness"] if "fitness" in arrays.files else None  # (G, P); absent in older state files
    return {"mean": arrays["mean"], "best_params": arrays["best_params"], "fitness": fitness, **meta}


def _generation_seed(seed: int, generation: int, draw: str) -> int:
    """The seed of one draw (``ask``, ``fitness``, ``tell``) of one generation: a function of ``(seed, generation)`` only."""
    return int(np.random.SeedSequence([seed, generation, ("ask", "fitness", "tell").index(draw)]).generate_state(1)[0])


def _ask(es: cma.CMAEvolutionStrategy, seed: int, generation: int) -> list[np.ndarray]:
    np.random.seed(_generation_seed(seed, generation, "ask"))  # cma samples from numpy's global generator
    return es.ask()


def _tell(es: cma.CMAEvolutionStrategy, solutions: list[np.ndarray], scores: np.ndarray, seed: int,
          generation: int) -> None:
    np.random.seed(_generation_seed(seed, generation, "tell"))
    es.tell(solutions, (-scores).tolist())  # cma minimises


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
    options = {"popsize": population, "seed": seed + 1, "verbose": -9}
    es = cma.CMAEvolutionStrategy(np.zeros(num_params), sigma0, options)
    generation, all_fitness = 0, np.zeros((0, population))
    best_params, best_fitness, history = np.zeros(num_params), -float("inf"), []
    if state is not None:
        if state["mean"].shape != (num_params,):
            raise ValueError(f"resume state holds {state['mean'].shape[0]} parameters, the controller has {num_params}; "
                             f"delete {directory} to start over")
        generation = int(state["generation"])
        best_params, best_fitness, history = state["best_params"], float(state["best_fitness"]), list(state["history"])
        # Replay needs every past generation's fitness: a file from the fallback below keeps NaN rows.
        fitness_kept = state["fitness"] is not None and state["fitness"].shape == (generation, population)
        if fitness_kept and np.isfinite(state["fitness"]).all():
            all_fitness = state["fitness"]
            for past in range(generation):  # replay: the same candidates, told the stored fitness
                _tell(es, _ask(es, seed, past), all_fitness[past], seed, past)
        else:  # no fitness kept (an older file, or another population): restart from the mean and sigma
            es = cma.CMAEvolutionStrategy(state["mean"], float(state["sigma"]), {**options, "seed": seed + generation + 1})
            all_fitness = np.full((generation, population), np.nan)
    shown = Progress("cma-es", generations, unit="generation", initial=min(generation, generations), enabled=progress)
    while generation < generations:
        began = time.perf_counter()
        solutions = _ask(es, seed, generation)  # P arrays of (N,)
        params = torch.as_tensor(np.stack(solutions), dtype=torch.float32, device=device)  # (P, N)
        torch.manual_seed(_generation_seed(seed, generation, "fitness"))  # the dream's samples
        scores = fitness(params).double().cpu().numpy()  # (P,) one host transfer per generation
        # A NaN fitness (a diverged V or M) would make every candidate "equal" and CMA-ES wander on silently.
        check_finite({"fitness": torch.from_numpy(scores)}, where=f"controller (CMA-ES) generation {generation + 1}",
                     hint="the world model it dreams in is probably diverged")
        _tell(es, solutions, scores, seed, generation)
        all_fitness = np.concatenate([all_fitness, scores[None]])
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
                        best_params=best_params, best_fitness=best_fitness, history=history, fitness=all_fitness)
    shown.close()
    return {"best_params": np.asarray(best_params), "best_fitness": best_fitness, "mean": np.asarray(es.mean),
            "generation": generation, "history": history}
