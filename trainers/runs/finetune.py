"""Fine-tuning a pretrained world model (either family) on another env, new data, or a new reward.

- another env with a different action space: only the action-dependent layers are re-initialised
  (:data:`worldmodels.pretrained.ACTION_LAYERS`: the MDN-RNN's LSTM input projection and the controller;
  the RSSM's action-input layer and the actor's output layer). Their latent / stochastic-state input
  columns are still copied.
- the same env: training just continues on newly collected data.
- ``reward_only``: everything but the reward head is frozen, then the controller (CMA-ES in M's dream)
  or the actor (in Dreamer's imagination) is trained again.
- ``freeze`` ``encoder`` | ``dynamics``: ``requires_grad=False`` on V's encoder / the RSSM's encoder, or on
  the MDN-RNN's LSTM / the RSSM.

Training runs through the families' own stages (:mod:`trainers.runs.worldmodels_stages`) and online run
(:mod:`trainers.runs.dreamer`), so a killed fine-tune resumes when rerun. The result is also exported to
``RUN_DIR/pretrained`` (the exchange format).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from torch import nn

from trainers.runs.dreamer import PRESETS as DREAMER_PRESETS
from trainers.runs.dreamer import DreamerRunConfig, build, env_options, evaluate, fit_online, gradient_steps, make_trainer
from trainers.modules.dreamer import DreamerAgentConfig
from trainers.runs.worldmodels_config import PRESETS as WORLDMODELS_PRESETS
from trainers.runs.worldmodels_config import WorldModelsConfig
from trainers.runs.worldmodels_stages import (fit_stage, load_stage, mdnrnn_datamodule, mdnrnn_module, stage_collect,
                                         stage_controller, vae_datamodule, vae_module)
from worldmodels.checkpoint import allow_unverified_arg, allowing_unverified, read_config
from worldmodels.config import apply_overrides, arg, directory_problem, from_dict, save_json_atomic, threads_arg, to_dict
from worldmodels.data.latents import encode_store
from worldmodels.envs import make
from worldmodels.envs.options import protocol_of
from worldmodels.envs.spaces import ActionSpec
from worldmodels.envs.toy import register_toy_envs
from worldmodels.families.vm import DONE, save_stage
from worldmodels.model_evaluation import evaluate_model
from worldmodels.pretrained import ACTION_LAYERS, DREAMER, WORLDMODELS, export_from_run, save_dreamer, transfer
from worldmodels.profiling import resolve_device, set_threads
from worldmodels.registry import load, resolve

FREEZE_CHOICES = ("none", "encoder", "dynamics")


@dataclass
class FinetuneConfig:
    source: str = arg("", "pretrained model (--from): a directory, or NAME / checkpoints/NAME of a shipped one")
    env: str = arg("", "target env id; empty = the checkpoint's own env (continue training on new data)")
    freeze: str = arg("none", "submodules kept fixed: encoder (V / RSSM encoder) or dynamics (LSTM / RSSM)", choices=FREEZE_CHOICES)
    reward_only: bool = arg(False, "re-fit only the reward head (all else frozen), then re-train the controller / actor")
    updates: int = arg(1000, "optimiser steps: World Models V and M each; Dreamer gradient steps (--steps, on every "
                             "training command, counts agent steps)", minimum=1, maximum=10**9)
    run_dir: str = arg("runs/finetune", "artifacts, checkpoints and pretrained/ of the fine-tuned model; rerun to resume",
                       check=lambda c: directory_problem(c.run_dir))
    family_preset: str = arg("tiny", "the family script's preset for training settings (batch, sequence, CMA-ES, eval); sizes come from the checkpoint")
    episodes: int = arg(0, "World Models: random episodes collected in the target env (0 = the preset's)", minimum=0,
                        maximum=10**6)
    max_episode_steps: int = arg(0, "env option: truncate episodes after this many agent steps (0 = the preset's / env default)", minimum=0,
                                 maximum=10**7)
    # Adam moves every weight by about lr per step: past 1 it only diverges
    learning_rate: float = arg(0.0, "learning rate of V, M and the Dreamer world model (0 = the preset's)", minimum=0,
                               maximum=1.0)
    seed: int = arg(0, "seed for collection, training and evaluation", minimum=0, maximum=2**32 - 1)
    device: str = arg("auto", "torch device (World Models) / accelerator (Dreamer): auto, cpu, cuda/gpu")
    threads: str = threads_arg("", "empty = the family preset's", empty_ok=True)
    allow_unverified: bool = allow_unverified_arg()


def resolve_source(source: str) -> Path:
    """A whole-model directory from ``--from``: a path, ``checkpoints/NAME`` or a shipped NAME."""
    try:
        path = resolve(source) if source else None
    except FileNotFoundError as error:
        raise FileNotFoundError(f"--from {source!r}: no pretrained directory (config.json + model.safetensors) there; "
                                f"{error}") from None
    if path is None or not (path / "config.json").is_file():
        raise FileNotFoundError(f"--from {source!r}: no pretrained directory (config.json + model.safetensors) there")
    return path


def target_action_spec(env_id: str, image_size: int) -> ActionSpec:
    """The action space of ``env_id`` (made once and closed)."""
    register_toy_envs()
    env = make(env_id, image_size=image_size)
    try:
        return ActionSpec.from_space(env.action_space)
    finally:
        env.close()


def freeze(modules: dict[str, nn.Module], names: list[str]) -> list[str]:
    """``requires_grad=False`` on the named submodules ("component.attr.path"); returns the names frozen."""
    for name in names:
        component, _, path = name.partition(".")
        module = modules[component].get_submodule(path) if path else modules[component]
        module.requires_grad_(False)
    return names


def train_new_layers(modules: dict[str, nn.Module], reports: dict, keep_columns: dict[str, int]) -> list[str]:
    """Re-initialised parameters stay trainable inside a frozen submodule; their copied columns get zero gradient.

    With zero gradient Adam leaves those columns exactly unchanged, so the frozen part stays frozen.
    Returns a note per parameter re-enabled inside a frozen submodule.
    """
    notes = []
    for component, report in reports.items():
        for key in report.reinitialised:
            param = modules[component].get_parameter(key)
            if param.requires_grad:
                continue
            param.requires_grad_(True)
            n = keep_columns.get(f"{component}.{key}", 0)
            if n:
                param.register_hook(lambda grad, n=n: torch.cat([torch.zeros_like(grad[:, :n]), grad[:, n:]], 1))
            notes.append(f"except the new {component}.{key}" + (f"[:, {n}:]" if n else ""))
    return notes


def describe_reinit(reports: dict, keep_columns: dict[str, int]) -> list[str]:
    """``component.key`` (with the re-initialised column range when the leading columns were kept)."""
    described = []
    for component, report in reports.items():
        for key in report.reinitialised:
            n = keep_columns.get(f"{component}.{key}")
            described.append(f"{component}.{key}[:, {n}:]" if n else f"{component}.{key}")
    return described

# ---------------------------------------------------------------------------------------------- World Models


def worldmodels_config(config: FinetuneConfig, pretrained: dict, env_id: str) -> WorldModelsConfig:
    """The ``wm worldmodels`` config of the fine-tune: the preset's training settings, the checkpoint's sizes."""
    sizes = pretrained["sizes"]
    controller = sizes.get("controller", {})
    overrides = dict(env=env_id, run_dir=config.run_dir, seed=config.seed, device=config.device,
                     image_size=sizes["vae"]["image_size"], z_dim=sizes["vae"]["z_dim"], vae_depth=sizes["vae"]["depth"],
                     vae_stages=sizes["vae"]["stages"], hidden_size=sizes["mdnrnn"]["hidden_size"],
                     num_mixtures=sizes["mdnrnn"]["num_mixtures"], vae_steps=config.updates, mdnrnn_steps=config.updates,
                     controller=controller.get("kind", "linear"), controller_hidden=controller.get("hidden_size", 32))
    optional = {"episodes": config.episodes, "max_episode_steps": config.max_episode_steps,
                "vae_lr": config.learning_rate, "mdnrnn_lr": config.learning_rate}
    overrides.update({k: v for k, v in optional.items() if v})
    base = apply_overrides(WorldModelsConfig(), WORLDMODELS_PRESETS[config.family_preset],
                           source=f"preset {config.family_preset!r}")
    return apply_overrides(base, overrides, source="wm finetune")


def finetune_worldmodels(config: FinetuneConfig, source: Path, pretrained: dict, env_id: str, spec: ActionSpec) -> dict:
    """Collect in the target env, fine-tune V then M from the checkpoint, re-train C in M's dream, evaluate."""
    register_toy_envs()
    wm = worldmodels_config(config, pretrained, env_id)
    set_threads(config.threads or wm.threads)
    run_dir = Path(wm.run_dir)
    save_json_atomic(run_dir / "config.json", to_dict(wm))
    L.seed_everything(wm.seed, workers=True, verbose=False)
    store_dir = stage_collect(wm)
    keep = {"mdnrnn.lstm.weight_ih_l0": wm.z_dim}  # the latent columns; the action columns follow them
    frozen: list[str] = []
    metrics: dict[str, float] = {}

    # V: observations only, never action-dependent. Frozen whole with --reward-only (M's latents must not move).
    v_module = vae_module(wm)
    reports = transfer(source, {"vae": v_module.vae})
    vae_frozen = ["vae"] if config.reward_only else ["vae.encoder", "vae.to_stats"] if config.freeze == "encoder" else []
    frozen += freeze({"vae": v_module.vae}, vae_frozen)
    if not (run_dir / "vae" / DONE).exists():
        if any(p.requires_grad for p in v_module.parameters()):
            metrics.update(fit_stage(wm, "vae", v_module, vae_datamodule(wm, store_dir), wm.vae_steps,
                                     done={"frozen": vae_frozen}))
        else:  # nothing to train: the pretrained V is the stage's result
            save_stage(run_dir / "vae", "vae", v_module.vae)
            save_json_atomic(run_dir / "vae" / DONE, {"steps": 0, "frozen": vae_frozen})
    vae = load_stage(wm, "vae")
    latent_dir = run_dir / "latents"
    encode_store(vae, store_dir, latent_dir, vae_weights=run_dir / "vae" / "model.safetensors",
                 device=resolve_device(wm.device))

    # M: the action columns of the LSTM input projection are new when the action space changed.
    scales = {"nll": 0.0, "reward": 1.0, "done": 0.0} if config.reward_only else None  # zero-scaled parts: zero gradient
    m_module = mdnrnn_module(wm, spec.dim, loss_scales=scales)
    reports.update(transfer(source, {"mdnrnn": m_module.mdnrnn}, reinit=ACTION_LAYERS[WORLDMODELS], keep_columns=keep))
    m_frozen = ["mdnrnn.lstm"] if config.reward_only or config.freeze == "dynamics" else []
    frozen += freeze({"mdnrnn": m_module.mdnrnn}, m_frozen)
    frozen += train_new_layers({"mdnrnn": m_module.mdnrnn}, {"mdnrnn": reports["mdnrnn"]}, keep)
    if not (run_dir / "mdnrnn" / DONE).exists():
        metrics.update(fit_stage(wm, "mdnrnn", m_module, mdnrnn_datamodule(wm, latent_dir), wm.mdnrnn_steps,
                                 done={"frozen": m_frozen}))
    mdnrnn = load_stage(wm, "mdnrnn")
    if config.reward_only:
        frozen.append("mdnrnn.head (all but the reward output: zero loss scale)")

    # C: always re-trained by CMA-ES in the (fine-tuned) dream; a changed action space changes its size.
    selection = stage_controller(wm, vae, mdnrnn, latent_dir, spec)
    device = resolve_device(wm.device)
    result = evaluate_model(load(run_dir, device), episodes=wm.eval_episodes, seed=wm.seed + 10_000, env_id=env_id,
                            num_envs=wm.num_envs, max_episode_steps=wm.max_episode_steps, frameskip=wm.frameskip,
                            device=device, progress=True)
    save_json_atomic(run_dir / "eval.json", result)
    export_from_run(run_dir)
    reinitialised = describe_reinit(reports, keep)
    if spec != ActionSpec.from_dict(pretrained["action_spec"]) and "controller" in pretrained["sizes"]:
        reinitialised.append("controller (re-trained by CMA-ES)")
    return {"reinitialised": reinitialised, "frozen": frozen, "metrics": metrics, "selection": selection,
            "eval_return": result["return_mean"], "random_return": result["random_mean"],
            "pretrained_dir": str(run_dir / "pretrained")}


# ---------------------------------------------------------------------------------------------- Dreamer


def dreamer_config(config: FinetuneConfig, pretrained: dict, env_id: str) -> DreamerRunConfig:
    """The ``wm dreamer`` config: the preset's replay/run settings, the checkpoint's agent config, ``--updates`` gradient steps."""
    base = apply_overrides(DreamerRunConfig(), DREAMER_PRESETS[config.family_preset], source=f"preset {config.family_preset!r}")
    agent = from_dict(DreamerAgentConfig, pretrained["config"])
    # The fine-tuned agent observes what the checkpoint did: `--obs auto` would give CartPole a pixel model vectors.
    obs = "vector" if len(pretrained["obs_shape"]) == 1 else "pixels"
    # ... and plays by the checkpoint's env settings (ALE protocol, action repeat), whatever the preset says.
    saved_env = pretrained.get("env_options", {})
    overrides = {**to_dict(agent), "env": env_id, "run_dir": config.run_dir, "seed": config.seed, "obs": obs,
                 "image_size": int(pretrained["obs_shape"][0]), "atari_protocol": protocol_of(saved_env),
                 **({"frameskip": saved_env["frameskip"]} if saved_env.get("frameskip") is not None else {})}
    if config.learning_rate:
        overrides["model_lr"] = config.learning_rate
    if config.max_episode_steps:  # the preset's or the flag's limit, in training and in the evaluation after it
        overrides["max_episode_steps"] = config.max_episode_steps
    elif saved_env.get("max_episode_steps") is not None:
        overrides["max_episode_steps"] = saved_env["max_episode_steps"]
    if config.device != "auto":
        overrides["device"] = config.device
    run_cfg = apply_overrides(base, overrides, source="wm finetune")
    # env steps so that gradient_steps(run_cfg) == config.updates: replay_ratio replayed rows per env step.
    env_steps = run_cfg.prefill + math.ceil(config.updates * run_cfg.batch_size * run_cfg.seq_len / run_cfg.replay_ratio)
    return apply_overrides(run_cfg, {"steps": env_steps}, source="wm finetune")


def finetune_dreamer(config: FinetuneConfig, source: Path, pretrained: dict, env_id: str, spec: ActionSpec) -> dict:
    """Online Dreamer training (the ``wm dreamer`` agent, replay and Trainer) started from the checkpoint."""
    cfg = dreamer_config(config, pretrained, env_id)
    set_threads(config.threads or cfg.threads)
    run_dir = Path(cfg.run_dir)
    save_json_atomic(run_dir / "config.json", to_dict(cfg))
    module, replay = build(cfg, store_dir=str(run_dir / "episodes"))
    parts = {"world_model": module.world_model, "actor": module.actor, "critic": module.critic}
    keep = {"world_model.rssm.img_in.0.weight": cfg.stoch * cfg.classes}  # stochastic-state columns, then action columns
    reports = transfer(source, parts, reinit=ACTION_LAYERS[DREAMER], keep_columns=keep)
    module.slow_critic.load_state_dict(module.critic.state_dict())
    names = {"encoder": ["world_model.encoder"], "dynamics": ["world_model.rssm"], "none": []}[config.freeze]
    if config.reward_only:
        names = [f"world_model.{child}" for child, _ in module.world_model.named_children() if child != "reward"]
    frozen = freeze(parts, names) + train_new_layers(parts, reports, keep)

    steps = gradient_steps(cfg)
    fit_online(make_trainer(cfg, run_dir), module, replay, cfg)
    module.eval()
    record = evaluate(module, env_id, episodes=cfg.eval_episodes, seed=cfg.seed + 10_000, options=env_options(cfg))
    save_json_atomic(run_dir / "eval.json", record)
    metrics = {"eval_return": record["return_mean"], "random_return": record["random_mean"]}
    save_json_atomic(run_dir / "results.json", {"env": env_id, "env_steps": replay.env_steps, "gradient_steps": steps,
                                                "episodes_stored": len(replay.store) if replay.store is not None else 0,
                                                **metrics})
    save_dreamer(run_dir / "pretrained", parts, agent_config=module.hparams["config"], env_id=env_id,
                 env_options=env_options(cfg), metrics=metrics,
                 training_steps={"gradient_steps": steps, "env_steps": replay.env_steps,
                                 "pretrained": pretrained.get("training_steps", {})})
    return {"reinitialised": describe_reinit(reports, keep), "frozen": frozen, "metrics": metrics,
            "gradient_steps": steps, "env_steps": replay.env_steps, "pretrained_dir": str(run_dir / "pretrained")}


def finetune(config: FinetuneConfig) -> dict:
    """Fine-tune ``config.source`` on ``config.env``; writes ``RUN_DIR/finetune.json`` and returns the same dict."""
    if config.updates < 1:
        raise ValueError(f"--updates must be >= 1, got {config.updates}")
    if config.reward_only and config.freeze != "none":
        raise ValueError("--reward-only already freezes everything but the reward head; leave --freeze at none")
    source = resolve_source(config.source)
    pretrained = read_config(source)
    family = pretrained.get("family")
    runners = {WORLDMODELS: finetune_worldmodels, DREAMER: finetune_dreamer}
    if family not in runners:
        raise ValueError(f"{source}/config.json: family {family!r}; expected one of {sorted(runners)}")
    env_id = config.env or pretrained["env_id"]
    source_spec = ActionSpec.from_dict(pretrained["action_spec"])
    spec = target_action_spec(env_id, int(pretrained["obs_shape"][0]))
    Path(config.run_dir).mkdir(parents=True, exist_ok=True)
    with allowing_unverified(config.allow_unverified):  # the source's weights are read by several transfers
        result = runners[family](config, source, pretrained, env_id, spec)
    result = {"source": str(source), "family": family, "env": env_id, "source_env": pretrained["env_id"],
              "action_space_changed": spec != source_spec, "source_action_spec": source_spec.to_dict(),
              "action_spec": spec.to_dict(), **result}
    save_json_atomic(Path(config.run_dir) / "finetune.json", result)
    return result
