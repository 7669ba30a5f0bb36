"""A policy as ONE recurrent ONNX step, for clients without torch (``wm export --format onnx``; docs/onnx.md).

Each family's step is :meth:`worldmodels.policies.ModelPolicy.act` for one env step, with the recurrent state
as explicit inputs and outputs, built from the same modules and methods, so a client feeds back what it got::

    Dreamer (RSSM + actor; Hafner et al. 2023, Eq. 3)
      inputs   obs (B, H, W, C) uint8 | (B, D) float32, is_first (B,) bool,
               deter (B, Dh), stoch (B, S, K), prev_action (B, A), uniform (B, S) in [0, 1)
      step     is_first: (deter, stoch) := initial, prev_action := 0
               h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1});  logits = q(z_t | h_t, embed(obs))
               z_t = one-hot inverse-CDF draw of logits at ``uniform`` (what torch draws with torch.rand)
               a_t = mode of the actor at [h_t, z_t]
      outputs  action (B, A), action_index (B,) int64 (discrete), next_deter, next_stoch, logits (B, S, K)

    World Models (V + M + C; Ha & Schmidhuber 2018, Sec. 2, Eq. 2)
      inputs   obs (B, H, W, C) uint8, is_first (B,) bool, z (B, Z), h (B, Hd), c (B, Hd), prev_action (B, A)
      step     z_t = V's posterior mean of obs;  (h_t, c_t) = LSTM(z_{t-1}, a_{t-1}, (h, c)), zeros where is_first
               a_t = C([z_t, h_t])  (argmax one-hot, or tanh to the Box)
      outputs  action (B, A), action_index (B,) int64 (discrete), next_z, next_h, next_c

The posterior draw is the one random step of acting (the actor acts by its mode): its uniforms are an input, so
the graph is a pure function and feeding torch's draws reproduces torch exactly. ``policy.onnx.json`` names every
input and output, the initial state and how an output becomes the env action (:func:`describe`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from worldmodels.config import save_json_atomic, writing
from worldmodels.models.distributions import OneHotCategorical
from worldmodels.models.vm_world_model import VMWorldModel
from worldmodels.models.world_model import DreamerWorldModel
from worldmodels.policies import ActorHead, ControllerHead, ModelPolicy

ONNX_FILE, SPEC_FILE = "policy.onnx", "policy.onnx.json"
SPEC_FORMAT = "worldmodels-onnx-policy/1"
OPSET = 18
MAX_BATCH = 4096  # the dynamic batch dimension's bound (torch.export needs one)


class DreamerStep(nn.Module):
    """One :class:`ModelPolicy` step of a :class:`DreamerWorldModel` with an :class:`ActorHead` (module doc)."""

    STATE = {"deter": "next_deter", "stoch": "next_stoch", "prev_action": "action"}  # input <- the output fed back
    OUTPUTS = ("next_deter", "next_stoch", "logits")  # after action (and action_index)

    def __init__(self, world_model: DreamerWorldModel, head: ActorHead) -> None:
        super().__init__()
        if head.sample:
            raise ValueError("onnx export: the actor must act by its mode (sample=False); a sampled action is not "
                             "a deterministic step")
        self.world_model, self.head = world_model, head
        self.actor = head.actor  # registered, so .eval() and .cpu() reach it
        self.action_spec = world_model.action_spec

    def forward(self, obs: torch.Tensor, is_first: torch.Tensor, deter: torch.Tensor, stoch: torch.Tensor,
                prev_action: torch.Tensor, uniform: torch.Tensor) -> tuple[torch.Tensor, ...]:
        rssm = self.world_model.rssm
        # RSSM.observe with T = 1, taken apart: its reset test is a host read, which no traced graph can hold.
        state, prev_action = rssm.reset({"deter": deter, "stoch": stoch}, prev_action, is_first)
        stoch_weight, deter_weight = rssm._recurrent_weights()
        next_deter = rssm._recurrent(state, rssm._action_part(prev_action), stoch_weight)  # (B, Dh)
        embed = self.world_model.embed(obs)  # (B, E)
        logits = rssm._posterior_logits(next_deter, rssm._embed_part(embed), deter_weight)  # (B, S, K)
        # OneHotCategorical.sample's inverse CDF with the uniforms given: index = #{k : cdf_k < u}.
        probs = OneHotCategorical(logits).probs  # (B, S, K)
        index = (probs.cumsum(-1) < uniform.unsqueeze(-1)).sum(-1).clamp(max=rssm.classes - 1)  # (B, S)
        next_stoch = F.one_hot(index, rssm.classes).to(probs.dtype)  # (B, S, K)
        action = self.head.act_latent(rssm.feature({"deter": next_deter, "stoch": next_stoch}))  # (B, A) the mode
        if self.action_spec.discrete:
            return action, action.argmax(-1), next_deter, next_stoch, logits
        return action, next_deter, next_stoch, logits

    def example_inputs(self, batch_size: int, obs_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        initial = initial_state(self, batch_size)
        rssm = self.world_model.rssm
        return {"obs": _example_obs(batch_size, obs_shape), "is_first": torch.ones(batch_size, dtype=torch.bool),
                **initial, "uniform": torch.full((batch_size, rssm.stoch_dim), 0.5)}


class WorldModelsStep(nn.Module):
    """One :class:`ModelPolicy` step of a :class:`VMWorldModel` with a :class:`ControllerHead` (module doc)."""

    STATE = {"z": "next_z", "h": "next_h", "c": "next_c", "prev_action": "action"}
    OUTPUTS = ("next_z", "next_h", "next_c")

    def __init__(self, world_model: VMWorldModel, head: ControllerHead) -> None:
        super().__init__()
        if world_model.sample_latent:
            raise ValueError("onnx export: V must filter with its posterior mean (sample_latent=False), as the "
                             "loaded policy does")
        if head.params.shape[0] != 1:
            raise ValueError(f"onnx export: the controller holds {head.params.shape[0]} candidates; export one")
        self.world_model, self.head, self.action_spec = world_model, head, world_model.action_spec

    def forward(self, obs: torch.Tensor, is_first: torch.Tensor, z: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
                prev_action: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # VMWorldModel.observe with T = 1: M reads (z_{t-1}, a_{t-1}), is_first restarts it from zeros.
        next_z = self.world_model.encode(obs)  # (B, Z) posterior mean
        _, (h_new, c_new) = self.world_model.mdnrnn.step(z, prev_action, (h, c))
        keep = (~is_first.bool()).to(h_new.dtype).unsqueeze(-1)  # (B, 1)
        next_h, next_c = h_new * keep, c_new * keep
        action = self.head.act_latent(self.world_model.feature({"z": next_z, "h": next_h}))  # (B, A)
        if self.action_spec.discrete:
            return action, action.argmax(-1), next_z, next_h, next_c
        return action, next_z, next_h, next_c

    def example_inputs(self, batch_size: int, obs_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        return {"obs": _example_obs(batch_size, obs_shape), "is_first": torch.ones(batch_size, dtype=torch.bool),
                **initial_state(self, batch_size)}


def _example_obs(batch_size: int, obs_shape: tuple[int, ...]) -> torch.Tensor:
    if len(obs_shape) == 1:
        return torch.zeros(batch_size, *obs_shape)
    return torch.zeros(batch_size, *obs_shape, dtype=torch.uint8)


@torch.no_grad()
def initial_state(step: DreamerStep | WorldModelsStep, batch_size: int) -> dict[str, torch.Tensor]:
    """The state the first step reads, as :meth:`ModelPolicy.act` starts from ``state=None``.

    Dreamer: the RSSM's learned initial state and a zero action (the step also resets to it where ``is_first``).
    World Models: zeros; ``is_first`` must be true on an episode's first step (torch forces it for ``None``).
    """
    wm = step.world_model
    if isinstance(step, DreamerStep):
        state = wm.rssm.initial(batch_size)
        return {"deter": state["deter"].contiguous(), "stoch": state["stoch"],
                "prev_action": torch.zeros(batch_size, wm.action_spec.dim)}
    state = wm.initial(batch_size)
    return {"z": state["z"], "h": state["h"], "c": state["c"], "prev_action": state["action"]}


def policy_step(policy: Any) -> DreamerStep | WorldModelsStep:
    """The ONNX step of a loaded policy (``Pretrained.policy()``); a one-line ``ValueError`` for any other."""
    if not isinstance(policy, ModelPolicy) or type(policy) is not ModelPolicy:
        raise ValueError(f"onnx export: a {type(policy).__name__} has no ONNX step; export a Dreamer actor or a "
                         "World Models controller (a model without one acts at random, a planner plans)")
    wm, head = policy.world_model, policy.head
    if isinstance(wm, DreamerWorldModel) and isinstance(head, ActorHead):
        return DreamerStep(wm, head).eval()
    if isinstance(wm, VMWorldModel) and isinstance(head, ControllerHead):
        return WorldModelsStep(wm, head).eval()
    raise ValueError(f"onnx export: no ONNX step for {type(wm).__name__} with {type(head).__name__}")


def output_names(step: DreamerStep | WorldModelsStep) -> tuple[str, ...]:
    index = ("action_index",) if step.action_spec.discrete else ()
    return ("action", *index, *step.OUTPUTS)


# What each input and output is, for the JSON a client reads (shapes and dtypes come from the traced step).
DOCS = {
    "obs": "the observation as the torch policy takes it: the env's frame after worldmodels.envs.make's "
           "preprocessing (uint8 RGB, resized), or its float32 vector",
    "is_first": "true on an episode's first step (the step restarts the state there; pass true after every reset)",
    "deter": "RSSM deterministic state h_{t-1}", "stoch": "RSSM stochastic state z_{t-1}, S one-hot categoricals",
    "prev_action": "the model action taken at the previous step (the output 'action' fed back)",
    "uniform": "fresh uniforms in [0, 1) every step, one per latent categorical: the posterior draw "
               "(e.g. numpy.random.default_rng(seed).random((B, S), dtype=numpy.float32))",
    "z": "V's latent of the previous frame", "h": "M's LSTM hidden state", "c": "M's LSTM cell state",
    "action": "model action (B, A): one-hot for discrete spaces, inside the Box for continuous ones",
    "action_index": "the env action of a discrete space: argmax of 'action'",
    "next_deter": "h_t, fed back as 'deter'", "next_stoch": "z_t, fed back as 'stoch'",
    "logits": "posterior logits of z_t (unimixed; for inspection, not fed back)",
    "next_z": "z_t, fed back as 'z'", "next_h": "fed back as 'h'", "next_c": "fed back as 'c'",
}


def _tensor_entry(name: str, tensor: torch.Tensor) -> dict[str, Any]:
    shape: list[Any] = ["batch", *tensor.shape[1:]]
    return {"name": name, "shape": shape, "dtype": str(tensor.numpy().dtype), "doc": DOCS[name]}


def _bounds(values: tuple[float, ...]) -> list[float | None]:
    return [v if np.isfinite(v) else None for v in values]  # null: unbounded (JSON has no infinity)


@torch.no_grad()
def describe(step: DreamerStep | WorldModelsStep, example: dict[str, torch.Tensor], *, family: str, env_id: str,
             env_options: dict[str, Any], obs_shape: tuple[int, ...], source: str) -> dict[str, Any]:
    """The ``policy.onnx.json`` of a step: inputs, outputs, state feedback, initial state, noise and action mapping."""
    outputs = step(**example)
    spec = step.action_spec
    if spec.discrete:
        action = {"kind": "discrete", "dim": spec.dim, "env_action": "action_index",
                  "rule": "the env action of row b is action_index[b], an int in [0, dim)"}
    else:
        action = {"kind": "continuous", "dim": spec.dim, "low": _bounds(spec.low), "high": _bounds(spec.high),
                  "env_action": "action", "rule": "the env action of row b is action[b] (float32, already inside "
                                                  "[low, high]; null bounds: the model kept it in [-1, 1])"}
    noise = {"uniform": "uniform [0, 1) float32 (batch, S), drawn fresh every step"} if "uniform" in example else {}
    return {
        "format": SPEC_FORMAT, "onnx": ONNX_FILE, "opset": OPSET, "family": family, "source": source,
        "env_id": env_id, "env_options": env_options, "obs_shape": list(obs_shape),
        "torch_policy": f"worldmodels.load({source!r}).policy().act(obs, is_first, state), " + (
            "the actor's mode; the posterior z drawn with the 'uniform' input" if "uniform" in example
            else "V's posterior mean, C's deterministic action"),
        "inputs": [_tensor_entry(name, tensor) for name, tensor in example.items()],
        "outputs": [_tensor_entry(name, tensor) for name, tensor in zip(output_names(step), outputs)],
        "state": dict(step.STATE),
        "initial_state": {name: tensor[0].tolist() for name, tensor in initial_state(step, 1).items()},
        "noise": noise, "action": action,
        "loop": "state = initial_state (one row per env); each step: outputs = run({obs, is_first, **state, "
                "**noise}); state = {input: outputs[output] for input, output in state_map}; act with env_action",
    }


def _check_exporter() -> None:
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(f"onnx export needs {', '.join(missing)} (torch.onnx's exporter); "
                         "install them with: pip install 'worldmodels[onnx]'")


def export_onnx(pretrained: Any, out: str | Path, *, source: str = "") -> dict[str, Any]:
    """Write ``out/policy.onnx`` and ``out/policy.onnx.json`` for a loaded model (``worldmodels.load``).

    Exported with torch.onnx's dynamo exporter (the TorchScript one cannot trace the conv stack's fused
    LayerNorm + SiLU autograd function), batch dimension dynamic, weights inside the one file. Both files are
    written atomically. Returns the paths, the file size and the export time.
    """
    _check_exporter()
    if len(pretrained.obs_shape) not in (1, 3):
        raise ValueError(f"onnx export: obs_shape {list(pretrained.obs_shape)} is neither frames nor vectors")
    step = policy_step(pretrained.policy(sample=False)).cpu()
    example = step.example_inputs(2, tuple(pretrained.obs_shape))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    started = time.perf_counter()
    tmp = out / f".{ONNX_FILE}.{os.getpid()}.tmp"
    try:
        with writing(out / ONNX_FILE):
            try:
                with _quiet_exporter(), torch.no_grad():
                    torch.onnx.export(step, tuple(example.values()), str(tmp), input_names=list(example),
                                      output_names=list(output_names(step)), opset_version=OPSET, dynamo=True,
                                      external_data=False, dynamic_shapes={name: {0: batch} for name in example},
                                      optimize=True, verbose=False)
            except (OSError, ValueError):
                raise
            except Exception as error:  # noqa: BLE001 - the exporter's many error types: one line naming the step
                first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
                raise ValueError(f"onnx export: torch.onnx could not export the {pretrained.family} step "
                                 f"({type(error).__name__}: {first})") from error
            seconds = time.perf_counter() - started
            check_against_torch(step, tmp, tuple(pretrained.obs_shape))  # before it replaces anything
            os.replace(tmp, out / ONNX_FILE)
    finally:
        tmp.unlink(missing_ok=True)
    spec = describe(step, example, family=pretrained.family, env_id=pretrained.env_id,
                    env_options=dict(pretrained.env_options), obs_shape=tuple(pretrained.obs_shape),
                    source=source or str(pretrained.path))
    spec["sha256"] = hashlib.sha256((out / ONNX_FILE).read_bytes()).hexdigest()
    save_json_atomic(out / SPEC_FILE, spec)
    size_mb = (out / ONNX_FILE).stat().st_size / 2**20
    return {"onnx": str(out / ONNX_FILE), "spec": str(out / SPEC_FILE), "size_mb": size_mb, "export_s": seconds}


@torch.no_grad()
def check_against_torch(step: DreamerStep | WorldModelsStep, path: Path, obs_shape: tuple[int, ...], *,
                        batch_size: int = 3, atol: float = 1e-4) -> None:
    """Run the written file once in onnxruntime (when installed) on random inputs and states, at another batch size
    than the trace's, next to the torch step; a ``ValueError`` naming the output if any differs by more than ``atol``."""
    if importlib.util.find_spec("onnxruntime") is None:
        return
    import onnxruntime  # deferred: optional, only the export's self-check needs it

    generator = torch.Generator().manual_seed(0)
    inputs = step.example_inputs(batch_size, obs_shape)
    inputs["obs"] = (torch.randint(0, 256, inputs["obs"].shape, generator=generator, dtype=torch.uint8)
                     if inputs["obs"].dtype == torch.uint8 else torch.randn(inputs["obs"].shape, generator=generator))
    inputs["is_first"] = torch.arange(batch_size) == 0  # row 0 restarts; the others read the random state
    for name in step.STATE:  # random states, so that every recurrent weight shows in the outputs
        inputs[name] = torch.randn(inputs[name].shape, generator=generator)
    if "uniform" in inputs:
        inputs["uniform"] = torch.rand(inputs["uniform"].shape, generator=generator)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {name: tensor.numpy() for name, tensor in inputs.items()})
    for name, expected, value in zip(output_names(step), step(**inputs), got):
        difference = float(np.abs(expected.numpy().astype(np.float64) - value).max())
        if not difference <= atol:
            raise ValueError(f"onnx export: {path} gives {name} {difference:.3g} away from the torch step "
                             f"(more than {atol}); the exporter mistranslated the graph")


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Around the export: distributions unvalidated; the exporter's output dropped (a warning per torchvision op it
    cannot register, its stages, warnings about torch.export internals: LSTM weights, deprecated size checks).
    :func:`check_against_torch` checks the result instead."""
    logger = logging.getLogger("torch.onnx")
    level, validate = logger.level, torch.distributions.Distribution._validate_args
    logger.setLevel(logging.ERROR)
    # The continuous actor's Normal checks its arguments' values, a data-dependent branch no traced graph can hold.
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", message="The tensor attributes .* were assigned during export")
            warnings.filterwarnings("ignore", message="# The axis name: .* will not be used")  # one Dim, many inputs
            yield
    finally:
        logger.setLevel(level)
        torch.distributions.Distribution.set_default_validate_args(validate)
