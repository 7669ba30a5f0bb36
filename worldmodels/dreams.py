"""What a world model dreams, for any family, through the :class:`~worldmodels.core.WorldModel` protocol only.

The dream callbacks, ``wm dream`` and the open-loop KPIs call these; each one filters real frames with
``observe`` and rolls forward with ``imagine`` (the one latent loop, :func:`worldmodels.core.rollout`).
All are inference only: call them under ``torch.no_grad``. Frames are uint8 ``(..., H, W, C)``,
actions float ``(..., A)`` in model encoding.

Time alignment of :func:`open_loop` (row convention of DESIGN.md; ``K = context``)::

    rows      0 ... K-1 | K          K+1        ...  T-1
    observed  obs[0..K-1], action[0..K-2]  -> s_{K-1}
    imagined            | frames[0]  frames[1]  ...  frames[T-1-K]    under the real action[K-1], action[K], ...
                        | reward[0] ~ reward[K] (reward on arriving at row K), end[0] ~ terminated[K]

    imagine(s_{K-1}, action[:, K-1 : T-1], T-K):  state k+1 of the trajectory is row K + k

:func:`dream` reads the K context rows the same way, but the POLICY (a latent head, or uniform random
actions) picks the action from row K-1 on, so ``action[:, K-1]`` is not used; output step ``j`` is the
imagined row ``K + j``.

World Models' sampling settings (``VMWorldModel.temperature`` / ``sample_latent``) are set for the
duration of each call and restored afterwards, as the paper's figures and the old KPIs used them:
context frames are encoded to their posterior MEANS (a sampled z would add V's noise to every
forecast); the open loop runs at temperature 0 (the most likely mixture component's mean: a
deterministic forecast, what the KPIs score); dreams at temperature 1 (M's own distribution, the
dream environment of Sec. 4.4). Other families have no such settings and ignore them.

A V-only model (a bare :class:`~worldmodels.models.vae.ConvVAE`, the World Models V stage before M
exists) supports :func:`reconstruct` and :func:`latent_traversal` only.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator, Union

import numpy as np

import torch

from worldmodels.core import LatentPolicy, State, Trajectory, WorldModel, index_state, state_device
from worldmodels.models.conv import to_float_image, to_uint8_image
from worldmodels.models.vae import ConvVAE
from worldmodels.models.vm_world_model import VMWorldModel
from worldmodels import viz
from worldmodels.policies import ModelPolicy, RandomPolicy

if TYPE_CHECKING:  # the type only: this module never loads a model itself
    from worldmodels.registry import Pretrained

DreamModel = Union[WorldModel, ConvVAE]
"""What the dream functions accept: a world model, or V alone (reconstruction and latent traversal only)."""

OPEN_LOOP_TEMPERATURE = 0.0  # World Models: deterministic forecast (the KPIs score it)
DREAM_TEMPERATURE = 1.0  # World Models: M's own distribution (Sec. 4.4)


@contextlib.contextmanager
def sampling(world_model: WorldModel, temperature: float) -> Iterator[None]:
    """World Models only: posterior-mean context and M at ``temperature`` for the call, then restore."""
    if not isinstance(world_model, VMWorldModel):
        yield
        return
    saved = world_model.temperature, world_model.sample_latent
    world_model.temperature, world_model.sample_latent = float(temperature), False
    try:
        yield
    finally:
        world_model.temperature, world_model.sample_latent = saved


def _require_world_model(model: DreamModel, what: str) -> WorldModel:
    if isinstance(model, ConvVAE):
        raise ValueError(f"{what} needs a world model; V alone (a VAE) can only reconstruct: "
                         "add M (an MDN-RNN) as a VMWorldModel")
    return model


def _device(world_model: WorldModel) -> torch.device:
    return state_device(world_model.initial(1))


def _encode_mean(vae: ConvVAE, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    device = next(vae.parameters()).device
    return vae.encode(to_float_image(obs.to(device)))  # mu, logvar (..., Z)


def dream_models(pretrained: Pretrained) -> tuple[DreamModel, LatentPolicy | None]:
    """``(model, head)`` of a loaded model (``worldmodels.load(...)``; the commands do the loading): what ``wm dream``
    shows.

    ``model`` is the family's world model (V alone for a World Models run without M yet); ``head`` acts in
    the dreams: C, or the Dreamer actor SAMPLING (its dreams show the stochastic policy it trains), ``None``
    when nothing was trained to act (random actions).
    """
    model = pretrained.world_model if pretrained.world_model is not None else pretrained.components["vae"]
    policy = pretrained.policy(sample=True)
    return model, policy.head if isinstance(policy, ModelPolicy) else None


def dream_temperature(config: dict) -> float:
    """M's temperature in a model's dreams: the one its controller was trained at (``config.json`` ``"dream"``,
    written by ``wm worldmodels``' controller stage), else M's own distribution (1)."""
    return float((config.get("dream") or {}).get("temperature", DREAM_TEMPERATURE))


def vae_of(model: DreamModel) -> ConvVAE | None:
    """World Models' V of ``model`` (itself when it is V alone), or ``None`` for families without one."""
    if isinstance(model, ConvVAE):
        return model
    return model.vae if isinstance(model, VMWorldModel) else None


def reconstruct(model: DreamModel, obs: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, H, W, C)`` -> uint8 ``(N, H, W, C)``: each frame filtered alone (T = 1, ``is_first``), decoded."""
    if isinstance(model, ConvVAE):  # V alone: decode the posterior mean
        return to_uint8_image(model.decode(_encode_mean(model, obs)[0]))
    N = obs.shape[0]
    device = _device(model)
    with sampling(model, OPEN_LOOP_TEMPERATURE):
        states, _ = model.observe(obs.to(device).unsqueeze(1), None, torch.ones(N, 1, dtype=torch.bool, device=device))
    return model.decode(states)[:, 0]  # (N, H, W, C)


def _predictions(world_model: WorldModel, traj: Trajectory) -> dict[str, torch.Tensor]:
    """Frames of the imagined states s_1 .. s_H with their predicted reward and end probability."""
    arrived = index_state(traj.states, (slice(None), slice(1, None)))  # (B, H, ...)
    return {"frames": world_model.decode(arrived), "reward": traj.reward, "end": 1.0 - traj.cont}


def _observe_context(world_model: WorldModel, obs: torch.Tensor, action: torch.Tensor,
                     is_first: torch.Tensor) -> State:
    """The belief s_{K-1} after the ``K`` context rows ``(B, K, ...)``."""
    device = _device(world_model)
    _, last = world_model.observe(obs.to(device), action.to(device).float(), is_first.to(device).bool())
    return last


def open_loop(model: DreamModel, obs: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor,
              context: int, *, temperature: float = OPEN_LOOP_TEMPERATURE) -> dict[str, torch.Tensor]:
    """Predict rows ``context .. T-1`` under the REAL actions (see the module diagram).

    ``obs (B, T, H, W, C)`` uint8, ``action (B, T, A)``, ``is_first (B, T)`` -> ``frames (B, T-K, H, W, C)``
    uint8, ``reward (B, T-K)``, ``end (B, T-K)`` (probability the row is terminal). ``temperature``: World
    Models' M for the call (default 0, the deterministic forecast; the fair protocol of
    :mod:`worldmodels.open_loop` samples at 1); other families sample their own way and ignore it.
    """
    world_model = _require_world_model(model, "open_loop")
    B, T = obs.shape[:2]
    if not 1 <= context < T:
        raise ValueError(f"open_loop: context {context} must be in [1, T={T})")
    with sampling(world_model, temperature):
        last = _observe_context(world_model, obs[:, :context], action[:, :context], is_first[:, :context])
        actions = action[:, context - 1 : T - 1].to(state_device(last)).float()  # (B, T-K, A): a_{K-1} .. a_{T-2}
        traj = world_model.imagine(last, actions, T - context)
    return _predictions(world_model, traj)


def dream(model: DreamModel, head: LatentPolicy | None, obs: torch.Tensor, action: torch.Tensor,
          is_first: torch.Tensor, horizon: int, *, seed: int = 0,
          temperature: float = DREAM_TEMPERATURE) -> dict[str, torch.Tensor]:
    """``K`` context rows ``(B, K, ...)``, then ``horizon`` steps in which ``head`` acts on the imagined states.

    ``head=None`` acts with uniform random actions (:class:`~worldmodels.policies.RandomPolicy`, seeded
    ``seed``). ``temperature``: World Models' M (:func:`dream_temperature`: the one C was trained at).
    Returns ``frames (B, horizon, H, W, C)`` uint8, ``reward, end (B, horizon)``.
    """
    world_model = _require_world_model(model, "dream")
    with sampling(world_model, temperature):
        last = _observe_context(world_model, obs, action, is_first)
        policy = head if head is not None else RandomPolicy(world_model.action_spec, seed, state_device(last))
        traj = world_model.imagine(last, policy, horizon)
    return _predictions(world_model, traj)


def latent_traversal(model: DreamModel, obs: torch.Tensor, dims: int, steps: int, sigma: float = 3.0, *,
                     reference: torch.Tensor | None = None) -> torch.Tensor:
    """World Models: sweep the ``dims`` most active latents of ``obs (1, H, W, C)`` over ``±sigma``.

    Returns uint8 ``(dims, steps, H, W, C)``. Activity is the variance of ``mu`` over ``reference`` frames
    ``(N, H, W, C)`` (Burda et al. 2016's active units); ``sigma`` is in units of that dimension's spread.
    Without ``reference`` the dims with the smallest posterior variance of ``obs`` are taken, swept in
    prior units (sigma 1 = N(0, 1)).
    """
    vae = vae_of(model)
    if vae is None:
        raise ValueError(f"latent_traversal needs World Models' V; {type(model).__name__} has no VAE latent")
    mu, logvar = _encode_mean(vae, obs[:1])  # (1, Z)
    if reference is not None and reference.shape[0] > 1:
        ref_mu = _encode_mean(vae, reference)[0]  # (N, Z)
        activity, spread = ref_mu.var(0), ref_mu.std(0)
    else:
        activity, spread = -logvar[0], torch.ones_like(mu[0])
    chosen = activity.topk(min(dims, mu.shape[-1])).indices  # (dims,)
    offsets = torch.linspace(-sigma, sigma, steps, device=mu.device)  # (steps,)
    z = mu.expand(len(chosen), steps, -1).clone()  # (dims, steps, Z)
    rows = torch.arange(len(chosen), device=mu.device)
    z[rows, :, chosen] = mu[0, chosen, None] + offsets[None, :] * spread[chosen, None]
    return to_uint8_image(vae.decode(z))


def latent_traversal_grid(model: DreamModel, frame: torch.Tensor, reference: torch.Tensor, *, dims: int,
                          steps: int, sigma: float = 3.0) -> np.ndarray | None:
    """One image of :func:`worldmodels.latent_traversal` (rows: dims, columns: -sigma..+sigma).

    ``frame (1, H, W, C)``; ``reference (N, H, W, C)`` real frames that rank the latents by their spread.
    ``None`` for families without World Models' V latent (Dreamer).
    """
    if vae_of(model) is None:
        return None
    sweep = latent_traversal(model, frame, dims=dims, steps=steps, sigma=sigma, reference=reference)
    sweep = viz.as_uint8(sweep)
    return viz.image_grid(sweep)  # (dims, steps, H, W, C) -> (H', W', C)
