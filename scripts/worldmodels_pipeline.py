"""World Models end to end (Ha & Schmidhuber 2018): collect -> V -> M -> C in the dream -> evaluate.

Each stage (``trainers.runs.worldmodels_stages``) writes under ``--run-dir`` and is skipped when done, so a
killed run resumes where it stopped; ``RUN_DIR/eval.json`` holds the real-env return vs random.
``--store DIR`` trains on a recorded store instead of collecting; with ``--evaluate false`` no env is made.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import nullcontext
from pathlib import Path

import lightning as L

from trainers.data.distributed import barrier, is_rank_zero, rank_and_world_size, stage_seed
from trainers.runs.worldmodels_config import PRESETS, WorldModelsConfig, pretrained_settings, validate
from trainers.runs.worldmodels_stages import (copy_pretrained, log_real_return, stage_collect, stage_controller, stage_mdnrnn,
                                         stage_vae)
from worldmodels.config import RERUN_MAY_DIFFER, ConfigError, check_same_settings, save_json_atomic, to_dict
from worldmodels.families.vm import DONE
from worldmodels.data.latents import encode_store
from worldmodels.data.store import EpisodeStore, env_of_store
from worldmodels.envs.toy import register_toy_envs
from worldmodels.evaluation import result_table, write_eval
from worldmodels.locking import exclusive_lock
from worldmodels.model_evaluation import evaluate_model
from worldmodels.profiling import resolve_device, set_threads
from worldmodels.registry import Pretrained, load

CONFIG = WorldModelsConfig
DEFAULT_PRESET = "tiny"
CLI_ALIASES = {"--from": "init_from"}
STAGE_BUDGETS = {"vae_steps": "vae", "mdnrnn_steps": "mdnrnn", "generations": "controller"}  # budget -> its stage  # `from` is a Python keyword, so the field is `init_from`
__all__ = ["CONFIG", "DEFAULT_PRESET", "PRESETS", "WorldModelsConfig", "run"]


def run(config: WorldModelsConfig) -> dict:
    """All stages in order (each skipped when done); returns the real-env evaluation next to random.

    Rank zero holds the run directory's and its episode store's locks throughout (the other DDP ranks share them).
    """
    register_toy_envs()
    pretrained = None
    if config.init_from:
        pretrained = load(config.init_from, allow_unverified=config.allow_unverified)
        settings = pretrained_settings(pretrained)
        changed = {k: v for k, v in settings.items() if getattr(config, k) != v}
        if changed:
            print(f"wm worldmodels: from {config.init_from}: {changed}")
        config = dataclasses.replace(config, **settings)
    if config.store:  # recorded absolute in config.json, so the run's model loads from any directory; and the env
        # the run records is the store's (it trains on the store alone; config.json named the --env default)
        config = dataclasses.replace(config, store=str(Path(config.store).resolve()),
                                     env=env_of_store(config.store, config.env,
                                                      default=WorldModelsConfig.__dataclass_fields__["env"].default))
    validate(config)  # before anything is collected or written
    if not is_rank_zero():
        return _stages(config, pretrained)
    run_dir = Path(config.run_dir)
    # A given --store is only read: other runs may train on it at the same time.
    collecting = nullcontext() if config.store else exclusive_lock(run_dir / "episodes", what="episode store")
    with exclusive_lock(run_dir, what="run directory"), collecting:
        return _stages(config, pretrained)


def _stages(config: WorldModelsConfig, pretrained: Pretrained | None = None) -> dict:
    """collect -> V -> latents -> M -> C -> evaluate, each stage skipped when its DONE marker exists."""
    set_threads(config.threads)  # 'auto' measures, 0 keeps torch's default (wm worldmodels --threads auto was refused)
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    # Stages done with other settings would be skipped (or fail on a size mismatch when resumed): refuse up front.
    # A stage's budget may grow while the stage is unfinished (a killed run resumed for longer); nothing else may change.
    # --allow-unverified only lets --from load: a resume may give it or not.
    grown = check_same_settings(run_dir, config, ignore=RERUN_MAY_DIFFER | {"allow_unverified"},
                                may_grow=frozenset(STAGE_BUDGETS))
    finished = sorted(key for key in grown if (run_dir / STAGE_BUDGETS[key] / DONE).exists())
    if finished:
        raise ConfigError(f"{', '.join('--' + k.replace('_', '-') for k in finished)} grew, but "
                          f"{', '.join(STAGE_BUDGETS[k] for k in finished)} already finished in {run_dir}; "
                          f"train longer in another --run-dir")
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
    if pretrained is not None and is_rank_zero():
        copy_pretrained(config, pretrained.components)  # V and M are finished stages; only C is trained
    barrier()
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
    if not config.evaluate:
        print(f"wm worldmodels: trained on {store_dir} without evaluation (--evaluate false); evaluate with "
              f"wm evaluate --run-dir {run_dir} --env ENV; stage seconds {({k: round(v) for k, v in timings.items()})}")
        return {"selection": selection, "seconds": timings}
    seed("evaluate")
    # The run as saved, loaded back (what `wm evaluate --run-dir` plays), against random on the same seeds.
    device = resolve_device(config.device)
    result = evaluate_model(load(run_dir, device), episodes=config.eval_episodes, seed=config.seed + 10_000,
                            env_id=config.env, num_envs=config.num_envs, max_episode_steps=config.max_episode_steps,
                            frameskip=config.frameskip, device=device, progress=True)
    lap("evaluate")
    result = {**result, "selection": selection, "seconds": timings}
    write_eval(run_dir / "eval.json", result)
    log_real_return(run_dir, store_dir, result)
    print(f"wm worldmodels: stage seconds {({k: round(v) for k, v in timings.items()})}\n{result_table(result)}\n"
          f"-> {run_dir / 'eval.json'}")
    return result
