"""The World Models dream environment: controllers evaluated entirely inside M (Ha & Schmidhuber 2018, Sec. 4.4).

A whole CMA-ES population x repeats is ONE batch of ``P * R`` rows rolled forward together:
no Python loop over candidates and no host sync inside the time loop.

Dream rollout, one step (``h_t`` is M's state BEFORE reading ``(z_t, a_t)``; ``h_0 = 0``)::

    z_0 ~ q(z | first frame of a random real episode)      (real cached latents)
    t:    a_t = C([z_t, h_t])
          M(z_t, a_t, h_t) -> mixture over z_{t+1}, reward_{t+1}, done_{t+1}, h_{t+1}
          return += alive_t * reward_{t+1}
          alive_{t+1} = alive_t * (1 - done_{t+1})           (done: sigmoid(done_logit) > 0.5, or sampled)
          z_{t+1} ~ mixture with temperature tau
"""

from __future__ import annotations

import time

import torch

from worldmodels.controllers.linear import LinearController, PopulationController
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.mdnrnn import MDNRNN, mdn_sample


@torch.no_grad()
def dream_rollout(
    mdnrnn: MDNRNN,
    controller: PopulationController,
    params: torch.Tensor,
    start_mu: torch.Tensor,
    start_logvar: torch.Tensor,
    *,
    repeats: int,
    horizon: int,
    temperature: float = 1.0,
    sample_done: bool = False,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Roll ``P`` candidates x ``repeats`` dreams for ``horizon`` steps; returns ``(P, R)`` tensors.

    ``params (P, N)`` on M's device; ``start_mu, start_logvar (S, Z)`` posterior statistics of real
    episode-start frames. Repeat ``r`` of every candidate starts from the SAME real frame (common
    random numbers: candidates are compared on the same starts, which lowers the ranking noise).
    Output: ``return (P, R)``, ``length (P, R)`` (steps survived before the predicted episode end).
    """
    P, R = params.shape[0], repeats
    device = params.device
    S, Z = start_mu.shape
    start = torch.randint(S, (R,), device=device, generator=generator).repeat(P)  # (P*R,) same starts per candidate
    noise = torch.randn((P * R, Z), device=device, generator=generator)
    z = start_mu[start] + (0.5 * start_logvar[start]).exp() * noise  # (P*R, Z)
    state = mdnrnn.initial_state(P * R, device)  # (P*R, H) x2
    alive = torch.ones(P * R, device=device)  # (P*R,)
    total = torch.zeros(P * R, device=device)  # (P*R,)
    length = torch.zeros(P * R, device=device)  # (P*R,)
    for _ in range(horizon):
        features = torch.cat([z, state[0]], dim=-1).reshape(P, R, -1)  # (P, R, Z + H)
        action = controller(params, features).reshape(P * R, -1)  # (P*R, A)
        out, state = mdnrnn.step(z, action, state)
        total = total + alive * out["reward"]
        length = length + alive
        done_prob = torch.sigmoid(out["done_logit"])  # (P*R,)
        if sample_done:
            done = (torch.rand(done_prob.shape, device=device, generator=generator) < done_prob).float()
        else:
            done = (done_prob > 0.5).float()
        alive = alive * (1.0 - done)
        z = mdn_sample(out["logit_pi"], out["mu"], out["log_sigma"], temperature=temperature, generator=generator)
    return {"return": total.reshape(P, R), "length": length.reshape(P, R)}


def dream_fitness(mdnrnn: MDNRNN, controller: PopulationController, params: torch.Tensor, start_mu: torch.Tensor,
                  start_logvar: torch.Tensor, **kwargs) -> torch.Tensor:
    """Per-candidate mean dream return ``(P,)`` (the CMA-ES fitness); kwargs as :func:`dream_rollout`."""
    return dream_rollout(mdnrnn, controller, params, start_mu, start_logvar, **kwargs)["return"].mean(1)


def bench_dream(population: int = 64, repeats: int = 16, steps: int = 1000, *, device: str | None = None,
                z_dim: int = 32, hidden_size: int = 256, num_mixtures: int = 5, action_dim: int = 3) -> dict[str, float]:
    """Dream steps per wall-clock second at the paper's sizes (CarRacing: Z 32, LSTM 256, K 5, A 3).

    One dream step = one (candidate, repeat, timestep) triple, so a call does
    ``population * repeats * steps`` steps. Random weights; the done head is biased off so no
    row stops early (the benchmark measures the full batch for every step).
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    mdnrnn = MDNRNN(z_dim, action_dim, hidden_size, num_mixtures).to(device).eval()
    with torch.no_grad():
        mdnrnn.head.bias[-1] = -20.0  # done logit: never end, measure every row every step
    spec = ActionSpec("continuous", action_dim, (-1.0,) + (0.0,) * (action_dim - 1), (1.0,) * action_dim)
    controller = LinearController(z_dim + hidden_size, spec).to(device)
    params = 0.1 * torch.randn(population, controller.num_params, device=device)
    start = torch.randn(8, z_dim, device=device)
    kwargs = dict(repeats=repeats, temperature=1.0)
    dream_rollout(mdnrnn, controller, params, start, torch.zeros_like(start), horizon=5, **kwargs)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    began = time.perf_counter()
    out = dream_rollout(mdnrnn, controller, params, start, torch.zeros_like(start), horizon=steps, **kwargs)
    out["return"].sum().item()  # wait for the device
    seconds = time.perf_counter() - began
    total = population * repeats * steps
    return {"device": device, "population": population, "repeats": repeats, "steps": steps, "seconds": seconds,
            "dream_steps_per_second": total / seconds, "batch_steps_per_second": steps / seconds,
            "torch_threads": torch.get_num_threads()}
