"""CMA-ES fitness in the World Models dream: controllers evaluated entirely inside M (Ha & Schmidhuber 2018, Sec. 4.4).

A whole CMA-ES population x repeats is ONE batch of ``P * R`` rows rolled forward together by
:meth:`VMWorldModel.imagine <worldmodels.models.vm_world_model.VMWorldModel.imagine>` (the one latent
loop): no Python loop over candidates and no host sync inside the time loop.

Dream of one row (``h_k`` is M's state BEFORE reading ``(z_k, a_k)``; ``h_0 = c_0 = 0``)::

    z_0 ~ q(z | first frame of a random real episode)          (real cached latents)
    k:    a_k = C([z_k, h_k])                                     ControllerHead
          M(z_k, a_k, h_k) -> r_{k+1}, c_{k+1} = 1 - P(done), z_{k+1} ~ mixture at tau, h_{k+1}
    done_{k+1}  = c_{k+1} < 0.5   (or sampled: u < 1 - c_{k+1} when ``sample_done``)
    alive_0 = 1,  alive_{k+1} = alive_k * (1 - done_{k+1})
    return = sum_{k<H} alive_k * r_{k+1},   length = sum_{k<H} alive_k

so the dream ENDS on M's predicted death: the reward of the step that dies counts, none after it.
"""

from __future__ import annotations

import time

import torch

from worldmodels.controllers.linear import LinearController, PopulationController
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.mdnrnn import MDNRNN
from worldmodels.models.vae import ConvVAE
from worldmodels.models.vm_world_model import VMWorldModel
from worldmodels.policies import ControllerHead


@torch.no_grad()
def dream_rollout(
    world_model: VMWorldModel,
    controller: PopulationController,
    params: torch.Tensor,
    start_mu: torch.Tensor,
    start_logvar: torch.Tensor,
    *,
    repeats: int,
    horizon: int,
    sample_done: bool = False,
) -> dict[str, torch.Tensor]:
    """Roll ``P`` candidates x ``repeats`` dreams for ``horizon`` steps; returns ``(P, R)`` tensors.

    ``params (P, N)`` on M's device; ``start_mu, start_logvar (S, Z)`` posterior statistics of real
    episode-start frames. Repeat ``r`` of every candidate starts from the SAME real frame (common
    random numbers: candidates are compared on the same starts, which lowers the ranking noise).
    M samples at ``world_model.temperature``; ``world_model.generator`` (if set) drives every draw.
    Output: ``return (P, R)``, ``length (P, R)`` (steps survived before the predicted episode end).
    """
    P, R = params.shape[0], repeats
    device, generator = params.device, world_model.generator
    S, Z = start_mu.shape
    start = torch.randint(S, (R,), device=device, generator=generator).repeat(P)  # (P*R,) same starts per candidate
    noise = torch.randn((P * R, Z), device=device, generator=generator)
    state = world_model.initial(P * R)  # h = c = 0, action 0
    state["z"] = start_mu[start] + (0.5 * start_logvar[start]).exp() * noise  # (P*R, Z)
    traj = world_model.imagine(state, ControllerHead(controller, params), horizon, keep_states=False)
    done_prob = 1.0 - traj.cont  # (P*R, H): step k ends the episode on arriving at s_{k+1}
    if sample_done:
        done = (torch.rand(done_prob.shape, device=device, generator=generator) < done_prob).float()
    else:
        done = (done_prob > 0.5).float()
    # alive_k for k = 0..H-1: 1 until (and including) the step that dies, 0 after it.
    alive = torch.cumprod(torch.cat([torch.ones_like(done[:, :1]), 1.0 - done[:, :-1]], 1), 1)  # (P*R, H)
    total = (alive * traj.reward).sum(1)  # (P*R,)
    return {"return": total.reshape(P, R), "length": alive.sum(1).reshape(P, R)}


def dream_fitness(world_model: VMWorldModel, controller: PopulationController, params: torch.Tensor,
                  start_mu: torch.Tensor, start_logvar: torch.Tensor, **kwargs) -> torch.Tensor:
    """Per-candidate mean dream return ``(P,)`` (the CMA-ES fitness); kwargs as :func:`dream_rollout`."""
    return dream_rollout(world_model, controller, params, start_mu, start_logvar, **kwargs)["return"].mean(1)


def bench_dream(population: int = 64, repeats: int = 16, steps: int = 1000, *, device: str | None = None,
                z_dim: int = 32, hidden_size: int = 256, num_mixtures: int = 5, action_dim: int = 3) -> dict[str, float]:
    """Dream steps per wall-clock second at the paper's sizes (CarRacing: Z 32, LSTM 256, K 5, A 3).

    One dream step = one (candidate, repeat, timestep) triple, so a call does
    ``population * repeats * steps`` steps. Random weights; the done head is biased off so no
    row stops early (the benchmark measures the full batch for every step). V is built only to
    complete the world model: the dream starts from latents and never encodes or decodes a frame.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    mdnrnn = MDNRNN(z_dim, action_dim, hidden_size, num_mixtures).to(device).eval()
    with torch.no_grad():
        mdnrnn.head.bias[-1] = -20.0  # done logit: never end, measure every row every step
    spec = ActionSpec("continuous", action_dim, (-1.0,) + (0.0,) * (action_dim - 1), (1.0,) * action_dim)
    world_model = VMWorldModel(ConvVAE(z_dim=z_dim).to(device).eval(), mdnrnn, spec, temperature=1.0)
    controller = LinearController(z_dim + hidden_size, spec).to(device)
    params = 0.1 * torch.randn(population, controller.num_params, device=device)
    start = torch.randn(8, z_dim, device=device)
    kwargs = dict(repeats=repeats)
    dream_rollout(world_model, controller, params, start, torch.zeros_like(start), horizon=5, **kwargs)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    began = time.perf_counter()
    out = dream_rollout(world_model, controller, params, start, torch.zeros_like(start), horizon=steps, **kwargs)
    out["return"].sum().item()  # wait for the device
    seconds = time.perf_counter() - began
    total = population * repeats * steps
    return {"device": device, "population": population, "repeats": repeats, "steps": steps, "seconds": seconds,
            "dream_steps_per_second": total / seconds, "batch_steps_per_second": steps / seconds,
            "torch_threads": torch.get_num_threads()}
