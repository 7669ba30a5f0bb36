"""One protocol, :class:`WorldModelView`, through which the dream callbacks and ``wm dream`` see any family.

Adapters: :class:`WorldModelsView` (ConvVAE + MDNRNN (+ controller), Ha & Schmidhuber 2018) and
:class:`DreamerView` (DreamerV3 world model + actor). :func:`load_view` builds one from a saved
model; :func:`view_for_module` from a training LightningModule.

All frames are uint8 ``(..., H, W, C)``; actions float ``(..., A)`` in model encoding (one-hot
for discrete). Every method is inference only (call it under ``torch.no_grad``).

Time alignment of ``open_loop`` (row convention of DESIGN.md; ``K = context``)::

    rows      0 ... K-1 | K          K+1        ...  T-1
    given     obs, action[0..K-1]  (action[K-1] leads to row K)
    output              | frames[0]  frames[1]  ...  frames[T-1-K]    under real action[K], action[K+1], ...
                        | reward[0] ~ reward[K] (reward on arriving at row K), end[0] ~ terminated[K]

``dream`` reads the K context rows, but the POLICY (controller / actor, or uniform random actions)
picks the action from row K-1 on, so ``action[:, K-1]`` is not used; output step ``j`` is the
imagined row ``K + j``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.conv import to_float_image, to_uint8_image


@runtime_checkable
class WorldModelView(Protocol):
    """What the dream callbacks need from a world model. ``latent_traversal`` is optional (World Models only)."""

    def reconstruct(self, obs: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, H, W, C)`` -> uint8 ``(N, H, W, C)``."""

    def open_loop(self, obs: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor, context: int) -> dict:
        """``obs (B, T, H, W, C)``, ``action (B, T, A)``, ``is_first (B, T)`` -> ``frames (B, T-context, H, W, C)``,
        ``reward (B, T-context)``, ``end (B, T-context)`` (probability), predicted under the real actions."""

    def dream(self, obs: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor, horizon: int) -> dict:
        """``obs (B, K, ...)`` context -> ``frames (B, horizon, H, W, C)``, ``reward, end (B, horizon)``; the policy acts."""


def random_actions(spec: ActionSpec | None, batch: int, dim: int, device: torch.device) -> torch.Tensor:
    """Uniform random model actions ``(batch, dim)``: one-hot for discrete, uniform in the Box (``[-1, 1]`` if unknown)."""
    if spec is None or spec.discrete:
        return F.one_hot(torch.randint(dim, (batch,), device=device), dim).float()
    low = torch.tensor(spec.low or (-1.0,) * dim, device=device).clamp(-1e3, 1e3)
    high = torch.tensor(spec.high or (1.0,) * dim, device=device).clamp(-1e3, 1e3)
    return low + (high - low) * torch.rand(batch, dim, device=device)


def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def _stack(outputs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([o[key] for o in outputs], 1) for key in outputs[0]}


class WorldModelsView:
    """V (ConvVAE) + M (MDNRNN) (+ C): frames are decoded from the latents M predicts.

    Context frames are encoded to their posterior means. ``open_loop_temperature`` 0 predicts the
    most likely mixture component's mean (a deterministic forecast, what the KPIs score);
    ``dream_temperature`` 1 samples like the paper's dream environment (Sec. 4.4).
    """

    def __init__(self, vae: torch.nn.Module, mdnrnn: torch.nn.Module | None = None, controller: Any = None,
                 params: torch.Tensor | None = None, *, action_spec: ActionSpec | None = None,
                 open_loop_temperature: float = 0.0, dream_temperature: float = 1.0) -> None:
        self.vae, self.mdnrnn, self.controller, self.params = vae, mdnrnn, controller, params
        self.action_spec = action_spec or getattr(controller, "action_spec", None)
        self.image_size = vae.image_size
        self.open_loop_temperature, self.dream_temperature = open_loop_temperature, dream_temperature

    def _encode(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vae.encode(to_float_image(obs.to(_device(self.vae))))  # mu, logvar (..., Z)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return to_uint8_image(self.vae.decode(z))  # (..., H, W, C) uint8

    def reconstruct(self, obs: torch.Tensor) -> torch.Tensor:
        return self._decode(self._encode(obs)[0])

    def _require_m(self) -> torch.nn.Module:
        if self.mdnrnn is None:
            raise ValueError("this World Models view has only V (a VAE); open-loop and dream need M (an MDN-RNN)")
        return self.mdnrnn

    def _step_outputs(self, out: dict[str, torch.Tensor], temperature: float) -> dict[str, torch.Tensor]:
        from worldmodels.models.mdnrnn import mdn_sample

        z = mdn_sample(out["logit_pi"], out["mu"], out["log_sigma"], temperature=temperature)  # (B, Z)
        return {"z": z, "reward": out["reward"], "end": torch.sigmoid(out["done_logit"])}

    def open_loop(self, obs: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor, context: int) -> dict:
        mdnrnn = self._require_m()
        B, T = obs.shape[:2]
        assert 1 <= context < T, f"open_loop: context {context} must be in [1, T={T})"
        device = _device(mdnrnn)
        action, is_first = action.to(device).float(), is_first.to(device).bool()
        z = self._encode(obs[:, :context])[0]  # (B, K, Z)
        out, state = mdnrnn(z, action[:, :context], is_first[:, :context])  # output at K-1 predicts row K
        step = self._step_outputs({k: v[:, -1] for k, v in out.items()}, self.open_loop_temperature)
        preds = [step]
        for t in range(context, T - 1):  # read predicted row t with the real action[t] -> predict row t+1
            out_t, state = mdnrnn.step(step["z"], action[:, t], state)
            step = self._step_outputs(out_t, self.open_loop_temperature)
            preds.append(step)
        pred = _stack(preds)  # z (B, P, Z), reward (B, P), end (B, P)
        return {"frames": self._decode(pred["z"]), "reward": pred["reward"], "end": pred["end"]}

    def _policy(self, z: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """C([z_t, h_t]) -> model actions ``(B, A)``; random actions without a controller."""
        B = z.shape[0]
        if self.controller is None or self.params is None:
            return random_actions(self.action_spec, B, self.mdnrnn.action_dim, z.device)
        features = torch.cat([z, hidden], -1).unsqueeze(0)  # (1, B, Z + H): one candidate, B rows
        return self.controller(self.params.reshape(1, -1).to(z.device), features)[0]  # (B, A)

    def dream(self, obs: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor, horizon: int) -> dict:
        mdnrnn = self._require_m()
        B, K = obs.shape[:2]
        device = _device(mdnrnn)
        action, is_first = action.to(device).float(), is_first.to(device).bool()
        z_all = self._encode(obs)[0]  # (B, K, Z)
        state = mdnrnn.initial_state(B, device)
        if K > 1:  # h BEFORE reading row K-1 (what the controller sees, see mdnrnn.py)
            _, state = mdnrnn(z_all[:, :-1], action[:, :-1], is_first[:, :-1])
        keep = (~is_first[:, -1]).float().unsqueeze(-1)  # row K-1 starting an episode resets M
        state = (state[0] * keep, state[1] * keep)
        z, preds = z_all[:, -1], []
        for _ in range(horizon):
            a = self._policy(z, state[0])  # (B, A)
            out, state = mdnrnn.step(z, a, state)
            step = self._step_outputs(out, self.dream_temperature)
            preds.append(step)
            z = step["z"]
        pred = _stack(preds)
        return {"frames": self._decode(pred["z"]), "reward": pred["reward"], "end": pred["end"]}

    def latent_traversal(self, obs: torch.Tensor, dims: int, steps: int, sigma: float = 3.0, *,
                         reference: torch.Tensor | None = None) -> torch.Tensor:
        """Sweep the ``dims`` most active latents of ``obs (1, H, W, C)`` over ``±sigma`` -> ``(dims, steps, H, W, C)``.

        Activity is the variance of ``mu`` over ``reference`` frames ``(N, H, W, C)`` (Burda et al. 2016's
        active units); ``sigma`` is in units of that dimension's spread. Without ``reference`` the dims with
        the smallest posterior variance of ``obs`` are taken, swept in prior units (sigma 1 = N(0, 1)).
        """
        mu, logvar = self._encode(obs[:1])  # (1, Z)
        if reference is not None and reference.shape[0] > 1:
            ref_mu = self._encode(reference)[0]  # (N, Z)
            activity, spread = ref_mu.var(0), ref_mu.std(0)
        else:
            activity, spread = -logvar[0], torch.ones_like(mu[0])
        chosen = activity.topk(min(dims, mu.shape[-1])).indices  # (dims,)
        offsets = torch.linspace(-sigma, sigma, steps, device=mu.device)  # (steps,)
        z = mu.expand(len(chosen), steps, -1).clone()  # (dims, steps, Z)
        rows = torch.arange(len(chosen), device=mu.device)
        z[rows, :, chosen] = mu[0, chosen, None] + offsets[None, :] * spread[chosen, None]
        return self._decode(z)


class DreamerView:
    """DreamerV3 world model (+ actor): posterior over the context, prior rollouts after it."""

    def __init__(self, world_model: torch.nn.Module, actor: torch.nn.Module | None = None, *,
                 action_spec: ActionSpec | None = None) -> None:
        self.world_model, self.actor, self.action_spec = world_model, actor, action_spec
        self.image_size = world_model.encoder.image_size

    def _observe(self, obs: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor) -> dict[str, torch.Tensor]:
        device = _device(self.world_model)
        embed = self.world_model.embed(obs.to(device))  # (B, T, E)
        post, _ = self.world_model.rssm.observe(embed, action.to(device).float(), is_first.to(device).bool())
        return post  # (B, T, ...)

    def _heads(self, states: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        wm = self.world_model
        feat = wm.rssm.feature(states)  # (B, P, F)
        return {"frames": to_uint8_image(wm.decoder(feat)), "reward": wm.reward.mean(wm.reward(feat)),
                "end": 1.0 - wm.cont.prob(wm.cont(feat))}

    def reconstruct(self, obs: torch.Tensor) -> torch.Tensor:
        N = obs.shape[0]
        device = _device(self.world_model)
        action = torch.zeros(N, 1, self.world_model.rssm.action_dim, device=device)
        post = self._observe(obs.unsqueeze(1), action, torch.ones(N, 1, dtype=torch.bool, device=device))
        return self._heads(post)["frames"][:, 0]

    def open_loop(self, obs: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor, context: int) -> dict:
        B, T = obs.shape[:2]
        assert 1 <= context < T, f"open_loop: context {context} must be in [1, T={T})"
        post = self._observe(obs[:, :context], action[:, :context], is_first[:, :context])
        last = {k: v[:, -1] for k, v in post.items()}  # s_{K-1}
        # imagine step k takes action[K-1+k] and gives the prior state of row K+k.
        priors = self.world_model.rssm.imagine(last, action[:, context - 1 : T - 1].to(last["deter"].device).float())
        return self._heads(priors)

    def dream(self, obs: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor, horizon: int) -> dict:
        B = obs.shape[0]
        rssm = self.world_model.rssm
        post = self._observe(obs, action, is_first)
        state, states = {k: v[:, -1] for k, v in post.items()}, []
        for _ in range(horizon):
            if self.actor is None:
                a = random_actions(self.action_spec, B, rssm.action_dim, state["deter"].device)
            else:
                a = self.actor(rssm.feature(state)).sample()  # (B, A)
            state = rssm.img_step(state, a)
            states.append(state)
        return self._heads(_stack(states))


def view_for_module(pl_module: Any) -> WorldModelView:
    """The view of a training module: its own ``world_model_view()`` if it has one, else by its parts.

    ``DreamerModule`` (``world_model`` + ``actor``) -> :class:`DreamerView`; a module with a ``vae``
    (and ``mdnrnn``) -> :class:`WorldModelsView`. An MDN-RNN module alone trains on latents and has no
    decoder: give those callbacks ``view_fn=lambda m: WorldModelsView(vae, m.mdnrnn)``.
    """
    if hasattr(pl_module, "world_model_view"):
        return pl_module.world_model_view()
    if hasattr(pl_module, "world_model"):
        return DreamerView(pl_module.world_model, getattr(pl_module, "actor", None),
                           action_spec=getattr(pl_module, "action_spec", None))
    if hasattr(pl_module, "vae"):
        return WorldModelsView(pl_module.vae, getattr(pl_module, "mdnrnn", None))
    raise TypeError(f"no WorldModelView for {type(pl_module).__name__}: pass view_fn= to the callback")


def load_view(checkpoint: str | Path, device: str | torch.device = "cpu") -> WorldModelView:
    """A view of a saved world model, chosen by config.json's ``family`` ("worldmodels" or "dreamer").

    Accepts: a World Models run directory (``vae/``, ``mdnrnn/``, optional ``controller/``, each a
    pretrained directory as written by ``wm worldmodels``) or one of those component directories; a
    Dreamer pretrained directory (``DreamerModule.from_pretrained`` if the family provides it, else
    config.json ``obs_shape``, ``action_spec``, ``config`` + components named like the module's
    attributes, e.g. ``world_model``, ``actor``); a Dreamer run directory or Lightning ``.ckpt``
    (read with ``weights_only=True``).
    """
    from worldmodels.checkpoint import CheckpointError, read_config

    path = Path(checkpoint)
    if path.is_file() and path.suffix == ".ckpt":
        return _dreamer_from_ckpt(path, device)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such checkpoint directory or .ckpt file")
    if (path / "config.json").is_file():
        config = read_config(path)
        family = config.get("family")
        if family == "worldmodels" and "kind" not in config:  # one whole-model directory (worldmodels.pretrained)
            from worldmodels.pretrained import load_worldmodels

            bundle = load_worldmodels(path, device)
            return WorldModelsView(bundle.vae, bundle.mdnrnn, bundle.controller, bundle.controller_params,
                                   action_spec=bundle.action_spec)
        if family == "worldmodels":
            run_dir = path.parent if config.get("kind") in ("vae", "mdnrnn", "controller") else path
            return _worldmodels_from_run(run_dir, device)
        if family == "dreamer":
            return _dreamer_from_pretrained(path, config, device)
        raise CheckpointError(f"{path / 'config.json'}: family {family!r}; expected 'worldmodels' or 'dreamer'")
    if (path / "vae" / "config.json").is_file():
        return _worldmodels_from_run(path, device)
    if (path / "checkpoints" / "last.ckpt").is_file():
        return _dreamer_from_ckpt(path / "checkpoints" / "last.ckpt", device)
    raise FileNotFoundError(f"{path}: holds no config.json, vae/ or checkpoints/last.ckpt; not a saved world model")


def _worldmodels_from_run(run_dir: Path, device: str | torch.device) -> WorldModelsView:
    from scripts.evaluate import load_controller, load_mdnrnn, load_vae  # the family's own loaders

    device = torch.device(device)
    vae = load_vae(run_dir / "vae", device)
    mdnrnn = load_mdnrnn(run_dir / "mdnrnn", device) if (run_dir / "mdnrnn" / "config.json").is_file() else None
    controller = params = None
    if (run_dir / "controller" / "config.json").is_file():
        controller, params = load_controller(run_dir / "controller", device)
    return WorldModelsView(vae, mdnrnn, controller, params)


def _dreamer_view(module: Any, device: str | torch.device) -> DreamerView:
    module = module.to(device).eval()
    return DreamerView(module.world_model, module.actor, action_spec=module.action_spec)


def _dreamer_from_pretrained(path: Path, config: dict, device: str | torch.device) -> DreamerView:
    from trainers.dreamer_module import DreamerModule
    from worldmodels.checkpoint import load_into, read_tensors

    if hasattr(DreamerModule, "from_pretrained"):
        return _dreamer_view(DreamerModule.from_pretrained(path), device)
    module = DreamerModule(obs_shape=config["obs_shape"], action_spec=config["action_spec"], config=config["config"])
    for component, state in read_tensors(path).items():
        load_into(getattr(module, component), state, component=component)
    return _dreamer_view(module, device)


def _dreamer_from_ckpt(path: Path, device: str | torch.device) -> DreamerView:
    from trainers.dreamer_module import DreamerModule
    from worldmodels.checkpoint import load_lightning_checkpoint

    checkpoint = load_lightning_checkpoint(path)
    module = DreamerModule(**checkpoint["hyper_parameters"])
    module.load_state_dict(checkpoint["state_dict"])
    return _dreamer_view(module, device)
