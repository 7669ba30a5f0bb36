"""World Models end to end (Ha & Schmidhuber 2018): collect -> V -> M -> C in the dream -> evaluate.

Each stage (``trainers.worldmodels_stages``) writes under ``--run-dir`` and is skipped when done, so a
killed run resumes where it stopped; ``RUN_DIR/eval.json`` holds the real-env return vs random.
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch

from scripts import evaluate
from trainers.distributed import barrier, is_rank_zero, rank_and_world_size, stage_seed
from trainers.worldmodels_config import PRESETS, WorldModelsConfig, validate
from trainers.worldmodels_stages import log_real_return, stage_collect, stage_controller, stage_mdnrnn, stage_vae
from worldmodels.config import save_json_atomic, to_dict
from worldmodels.data.latents import encode_store
from worldmodels.data.store import EpisodeStore
from worldmodels.envs.toy import register_toy_envs
from worldmodels.evaluation import write_eval
from worldmodels.locking import exclusive_lock
from worldmodels.profiling import resolve_device

CONFIG = WorldModelsConfig
DEFAULT_PRESET = "tiny"
__all__ = ["CONFIG", "DEFAULT_PRESET", "PRESETS", "WorldModelsConfig", "run"]


def run(config: WorldModelsConfig) -> dict:
    """All stages in order (each skipped when done); returns the real-env evaluation next to random.

    Rank zero holds the run directory's and its episode store's locks throughout (the other DDP ranks share them).
    """
    register_toy_envs()
    validate(config)  # before anything is collected or written
    if not is_rank_zero():
        return _stages(config)
    run_dir = Path(config.run_dir)
    with exclusive_lock(run_dir, what="run directory"), exclusive_lock(run_dir / "episodes", what="episode store"):
        return _stages(config)


def _stages(config: WorldModelsConfig) -> dict:
    """collect -> V -> latents -> M -> C -> evaluate, each stage skipped when its DONE marker exists."""
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_rank_zero():
        save_json_atomic(run_dir / "config.json", to_dict(config))
    timings: dict[str, float] = {}
    began = time.perf_counter()

    def lap(stage: str) -> None:
        timings[stage] = time.perf_counter() - began - sum(timings.values())

    def seed(stage: str) -> None:
        # Each stage starts from its own seed: resumed after a kill, it draws what it would have drawn uninterrupted.
        L.seed_everything(stage_seed(config.seed, stage), workers=True, verbose=False)

    seed("collect")
    store_dir = stage_collect(config)
    action_spec = EpisodeStore.open(store_dir).spec.action_spec
    lap("collect")
    seed("vae")
    vae = stage_vae(config, store_dir)
    lap("vae")
    latent_dir = run_dir / "latents"
    seed("latents")
    if is_rank_zero():
        encode_store(vae, store_dir, latent_dir, vae_weights=run_dir / "vae" / "model.safetensors",
                     device=resolve_device(config.device))
    barrier()
    lap("latents")
    seed("mdnrnn")
    mdnrnn = stage_mdnrnn(config, latent_dir, action_spec, vae=vae, store_dir=store_dir)
    lap("mdnrnn")
    if not is_rank_zero():  # DDP covers V and M; C (CMA-ES) and the evaluation run on rank zero only
        return {"rank": rank_and_world_size()[0], "seconds": timings}
    seed("controller")
    selection = stage_controller(config, vae, mdnrnn, latent_dir, action_spec)
    lap("controller")
    seed("evaluate")
    result = evaluate.run(evaluate.EvaluateConfig(
        run_dir=str(run_dir), env=config.env, episodes=config.eval_episodes, seed=config.seed + 10_000,
        num_envs=config.num_envs, max_episode_steps=config.max_episode_steps, frameskip=config.frameskip,
        device=config.device))
    lap("evaluate")
    result = {**result, "selection": selection, "seconds": timings}
    write_eval(run_dir / "eval.json", result)
    log_real_return(run_dir, store_dir, result)
    print(f"wm worldmodels: real-env return {result['return_mean']:.3f} ± {result['return_std']:.3f} vs random "
          f"{result['random_mean']:.3f} ± {result['random_std']:.3f}; stage seconds {({k: round(v) for k, v in timings.items()})}")
    return result
