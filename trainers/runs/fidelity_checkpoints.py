"""The policy set decision fidelity ranks for one loaded model (issue 28), deterministic given a seed.

Seven policies per model, all acting through the model's own world model (so each can act on its latents)::

    random           uniform random actions
    trained          the shipped policy (C with its saved parameters; Dreamer: the actor's mode, as wm evaluate)
    early, mid       intermediate checkpoints, which a shipped model does not keep, trained again in ITS OWN dream:
                       World Models: C by CMA-ES from zero for CMAES_GENERATIONS generations (CMAES_POPULATION
                         candidates, CMAES_REPEATS dreams each; worldmodels.fidelity_policies.cmaes_checkpoints)
                       Dreamer: a fresh actor after ACTOR_UPDATES policy-gradient updates in the shipped world
                         model's imagination (DreamerV3's actor loss, DreamerModule.actor_critic_losses, at
                         ACTOR_LR_SCALE x the shipped actor's learning rate), its λ-returns bootstrapped by the
                         shipped critic (frozen), started from the posteriors of random-policy play; the world
                         model is not trained. (With a fresh critic too, 30 updates on Boxing left the imagined
                         return and the actor's entropy at random's; see docs/fidelity.md.)
    noise-small/large  the trained policy with Gaussian weight noise, NOISE_SCALES x each tensor's rms
    epsilon          the trained policy, each action replaced by a uniform random one w.p. EPSILON

Every random draw of the set comes from ``seed``; the real episodes its builders play (CMA-ES start frames,
Dreamer's random play) use seeds ``seed + BUILD_SEED_OFFSET ...``, never an evaluation's.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np
import torch

from trainers.data.distributed import stage_seed
from trainers.modules.dreamer import DreamerModule
from trainers.modules.learner import learner_step
from trainers.modules.losses import weighted_sum
from worldmodels.core import Policy, flatten_start
from worldmodels.driver import Driver
from worldmodels.families.dreamer import DREAMER
from worldmodels.families.vm import WORLDMODELS
from worldmodels.fidelity_policies import (EpsilonRandomPolicy, cmaes_checkpoints, perturbed_actor,
                                           perturbed_controller)
from worldmodels.models.actor_critic import ema_update
from worldmodels.policies import ActorHead, ControllerHead, ModelPolicy, RandomPolicy
from worldmodels.registry import FAMILIES, Pretrained

CMAES_GENERATIONS = (1, 4)  # the shipped TakeCover C had 100, the tiny presets 12-30
CMAES_POPULATION, CMAES_REPEATS = 16, 2  # TakeCover: about 40 s a generation on the shared cores
ACTOR_UPDATES = (30, 120)  # the shipped Boxing actor had 14,250 (1-2 s each on the shared cores)
NOISE_SCALES = (0.3, 1.0)
EPSILON = 0.3
BUILD_SEED_OFFSET = 1_000_000
ACTOR_START_ENVS, ACTOR_START_ROWS, ACTOR_BATCH = 4, 256, 64  # random-play posteriors the fresh actor learns from
ACTOR_LR_SCALE = 10.0  # random-play posteriors the fresh actor learns from


@torch.no_grad()
def random_play_posteriors(model: Pretrained, make_env: Callable[[int], Any], *, seed: int, envs: int,
                           rows: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``rows`` steps of uniform random play in ``envs`` envs (reset ``seed + i``), filtered by the world model:
    posteriors ``(envs * rows, ...)`` and ``terminated (envs * rows,)`` (the start states of imagination)."""
    env = make_env(envs)
    frames, actions, firsts, ends = [], [], [], []
    try:
        driver = Driver(env, RandomPolicy(model.action_spec, seed=seed))
        driver.reset(seed=seed)
        for _ in range(rows):
            row = driver.step()
            frames.append(np.array(row["obs"]))
            actions.append(np.array(row["action"]))
            firsts.append(np.array(row["is_first"]))
            ends.append(np.array(row["terminated"]))
    finally:
        env.close()
    device = next(model.world_model.parameters()).device
    obs = torch.as_tensor(np.stack(frames, 1), device=device)  # (E, T, H, W, C)
    action = model.action_spec.to_model(torch.as_tensor(np.stack(actions, 1))).float().to(device)  # (E, T, A)
    is_first = torch.as_tensor(np.stack(firsts, 1), device=device)  # (E, T)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stage_seed(seed, "fidelity posteriors"))  # the RSSM samples its posteriors
        posteriors, _ = model.world_model.observe(obs, action, is_first)
    return flatten_start(posteriors), torch.as_tensor(np.stack(ends, 1), device=device).reshape(-1)


def actor_checkpoints(model: Pretrained, make_env: Callable[[int], Any], *, updates: tuple[int, ...], seed: int,
                      batch: int, lr_scale: float, start_envs: int, start_rows: int, shipped_critic: bool = False,
                      log: Callable[[int, dict], None] | None = None) -> dict[int, torch.nn.Module]:
    """Fresh actors trained in ``model``'s imagination: a copy after each count in ``updates``.

    Each update: ``batch`` start states drawn from :func:`random_play_posteriors` (``start_envs`` x ``start_rows``
    steps), DreamerV3's actor and critic losses on their imagined rollouts (the shipped agent's horizon, discount
    and scales, its learning rates x ``lr_scale``), one Adam step each (gradient norm clipped as in training; a
    non-finite loss or gradient stops before the step). ``shipped_critic``: the shipped critic, frozen, gives the
    values, and only the actor learns. ``log(update, imagination statistics)`` sees every update.
    """
    counts = sorted(set(int(u) for u in updates))
    if not counts or counts[0] < 1:
        raise ValueError(f"actor updates must be positive counts, got {list(updates)}")
    starts, terminated = random_play_posteriors(model, make_env, seed=seed, envs=start_envs, rows=start_rows)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stage_seed(seed, "fidelity actor"))  # the fresh actor's and critic's initial weights
        module = DreamerModule(obs_shape=model.obs_shape, action_spec=model.action_spec, config=model.config["config"])
        module.world_model = model.world_model  # imagined in, never trained here (no optimiser holds it)
        if shipped_critic:  # the shipped critic, frozen: its values bootstrap the λ-returns from the first update
            module.critic = copy.deepcopy(model.components["critic"]).requires_grad_(False)
            module.slow_critic = copy.deepcopy(model.components["critic"]).requires_grad_(False)
        module.to(terminated.device)
        cfg = module.config
        actor_opt = torch.optim.Adam(module.actor.parameters(), lr=lr_scale * cfg.actor_lr, eps=cfg.adam_eps)
        critic_opt = None if shipped_critic else torch.optim.Adam(module.critic.parameters(), lr=lr_scale * cfg.critic_lr,
                                                                  eps=cfg.adam_eps)
        draws = torch.Generator().manual_seed(stage_seed(seed, "fidelity actor batches"))
        out: dict[int, torch.nn.Module] = {}
        for update in range(1, counts[-1] + 1):
            index = torch.randint(len(terminated), (batch,), generator=draws).to(terminated.device)
            post = {key: value[index].unsqueeze(1) for key, value in starts.items()}  # (batch, 1, ...)
            parts, imagined = module.actor_critic_losses(post, terminated[index].unsqueeze(1))
            if log is not None:
                log(update, {key: float(value) for key, value in imagined.items()})
            steps = [(actor_opt, ("policy", "entropy"), cfg.actor_grad_clip),
                     (critic_opt, ("value", "value_slow"), cfg.critic_grad_clip)]
            for optimizer, keys, clip in [step for step in steps if step[0] is not None]:
                chosen = {key: parts[key] for key in keys}
                learner_step(optimizer, chosen, total=weighted_sum(chosen, module.loss_scales), clip=clip,
                             where=f"fidelity actor update {update}",
                             hint="the world model it imagines in is probably diverged")
            if critic_opt is not None:
                ema_update(module.slow_critic, module.critic, cfg.slow_critic_decay)
            if update in counts:
                out[update] = copy.deepcopy(module.actor).requires_grad_(False).eval()
    return out


def policy_set(model: Pretrained, make_env: Callable[[int], Any], *, seed: int, horizon: int,
               termination: str = "threshold") -> tuple[dict[str, Policy], dict[str, str]]:
    """The named policies (see the module doc) and one line per policy saying how it was made.

    ``make_env(num_envs)`` builds the model's real vector env; ``horizon`` and ``termination`` are the dream's
    (the World Models checkpoints are trained in a dream ending by the same rule).
    """
    if model.family not in (WORLDMODELS, DREAMER) or model.world_model is None:
        raise ValueError(f"{model.path}: decision fidelity builds its policy set for trained World Models and Dreamer "
                         f"models; this is a {model.family!r} model with components {sorted(model.components)}")
    head = FAMILIES[model.family].head(model.components, model.config, sample=False)
    if head is None:
        raise ValueError(f"{model.path}: holds no trained policy (components {sorted(model.components)}); finish its "
                         "training first")
    world_model, build_seed = model.world_model, seed + BUILD_SEED_OFFSET
    trained = ModelPolicy(world_model, head)
    policies: dict[str, Policy] = {"random": RandomPolicy(model.action_spec, seed=seed)}
    how = {"random": "uniform random actions"}
    if model.family == WORLDMODELS:
        env = make_env(16)
        try:
            found = cmaes_checkpoints(world_model, head.controller, env, generations=CMAES_GENERATIONS,
                                      population=CMAES_POPULATION, repeats=CMAES_REPEATS, seed=build_seed,
                                      horizon=horizon, sample_done=termination == "sample")
        finally:
            env.close()
        checkpoints = {f"cmaes-{g}gen": ModelPolicy(world_model, ControllerHead(head.controller, params))
                       for g, params in found.items()}
        how.update({name: f"C by CMA-ES from zero in this model's dream, {g} generations (population "
                          f"{CMAES_POPULATION}, {CMAES_REPEATS} dreams each)"
                    for name, g in zip(checkpoints, found)})
        perturb = lambda scale, s: perturbed_controller(world_model, head, scale, seed=s)  # noqa: E731
    else:
        found = actor_checkpoints(model, make_env, updates=ACTOR_UPDATES, seed=build_seed, batch=ACTOR_BATCH,
                                  lr_scale=ACTOR_LR_SCALE, start_envs=ACTOR_START_ENVS, start_rows=ACTOR_START_ROWS,
                                  shipped_critic=True)
        checkpoints = {f"actor-{u}upd": ModelPolicy(world_model, ActorHead(actor, model.action_spec, sample=False))
                       for u, actor in found.items()}
        how.update({name: f"a fresh actor after {u} policy-gradient updates in this world model's imagination "
                          f"(shipped critic, frozen; {ACTOR_BATCH} random-play start states each, learning rate "
                          f"{ACTOR_LR_SCALE:g} x the shipped actor's)" for name, u in zip(checkpoints, found)})
        perturb = lambda scale, s: perturbed_actor(world_model, head, scale, seed=s)  # noqa: E731
    policies["trained"], how["trained"] = trained, "the shipped policy"
    policies.update(checkpoints)
    for scale in NOISE_SCALES:
        name = f"noise-{scale:g}"
        policies[name] = perturb(scale, stage_seed(seed, name))
        how[name] = f"the shipped policy, Gaussian noise of {scale:g} x rms on every weight tensor"
    policies[f"epsilon-{EPSILON:g}"] = EpsilonRandomPolicy(trained, EPSILON, seed=stage_seed(seed, "epsilon"))
    how[f"epsilon-{EPSILON:g}"] = f"the shipped policy, each action uniform random w.p. {EPSILON:g}"
    return policies, how
