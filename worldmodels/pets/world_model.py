"""PETS (Chua et al. 2018) as a :class:`worldmodels.core.WorldModel` over vector observations or latents.

The state is the observation itself (the dynamics are Markov in it), so filtering is encoding::

    obs     (B, D)   the observation vector, or ``encoder(frame)`` (a pixel model's latent) when one is given
    action  (B, A)   a_t taken at obs (zeros until known)
    reward  (B,)     r_t, the reward of arriving at obs (0 at an episode's first state: the row convention)
    cont    (B,)     c_t, 1 while no state so far was terminal; terminal states are ABSORBING in imagination:
                     once c = 0 the particle stops moving and earns no more reward
    disagreement (B,)  ensemble disagreement of the step that arrived here (0 for observed states)
    member  (B,)     imagined only: the elite (position in ``ensemble.elites``) the step that arrived here ran
    slot    (B,)     imagined only: the row's place in the ``(K, ceil(B / K))`` block its member runs on

One prior step (``(obs_t, a_t) -> obs_{t+1}``, Chua et al. 2018 Sec. 4-5)::

    (mean, std)_k = ensemble_k([obs_t, a_t])        for every elite k: (K, B, O), O = D (+1 learned reward)
    delta = mean_b + std_b * eps                     b = the particle's member (TS1 / TS-inf), or
    delta = mean over k of mean_k                    (expectation: deterministic, no sampling)
    obs_{t+1} = obs_t + delta[:D];   r_{t+1} = reward_fn(obs_t, a_t, obs_{t+1}) or delta[D];
    c_{t+1} = c_t * (1 - termination_fn(obs_t, a_t, obs_{t+1}))

Propagation (Chua et al. 2018, Sec. 5, "trajectory sampling"): ``ts1`` draws a new bootstrap (member) for
every particle at EVERY step; ``tsinf`` draws one per particle when the rollout starts and keeps it for the
whole horizon; ``expectation`` propagates the mean over members. Particles are rows: the planner repeats each
candidate over ``particles`` rows (:func:`worldmodels.planning.base.score_candidates`) and averages returns.

Particles are spread evenly over the elites (a random balanced assignment, as the PETS code batches them),
so each member runs only on its own rows. ``expectation``, and any rollout that keeps its states, run every
elite on every row; the latter record the disagreement KPI: the std over members of their normalised mean
next-observation predictions, averaged over ``D``.
"""

from __future__ import annotations

import functools
from typing import Callable, Union

import torch
from torch import nn

from worldmodels.core import LatentPolicy, State, Trajectory, rollout
from worldmodels.envs.spaces import ActionSpec
from worldmodels.pets.ensemble import ProbabilisticEnsemble

PROPAGATIONS = ("ts1", "tsinf", "expectation")
RewardFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``(obs (B, D), action (B, A), next_obs (B, D)) -> reward (B,)`` (or, as a termination function, bool ``(B,)``)."""


class PETSWorldModel(nn.Module):
    """A :class:`ProbabilisticEnsemble` behind the world-model protocol (see the module docstring).

    ``reward_fn``: the env's known reward; without it the ensemble must predict the reward as its last output
    (``ensemble.out_dim == D + 1``). ``termination_fn``: the env's known termination (default: never).
    ``encoder``: maps frames ``(N, *obs_shape)`` to latents ``(N, D)`` (e.g. a World Models VAE's mean), so
    the ensemble runs over a pixel model's latents; it is not trained here. ``decoder``: latents -> frames.
    ``generator``: makes the particles' sampling reproducible without touching the global RNG.
    """

    def __init__(self, ensemble: ProbabilisticEnsemble, action_spec: ActionSpec, *, propagation: str = "tsinf",
                 reward_fn: RewardFn | None = None, termination_fn: RewardFn | None = None,
                 encoder: Callable[[torch.Tensor], torch.Tensor] | None = None, obs_shape: tuple[int, ...] | None = None,
                 decoder: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        if propagation not in PROPAGATIONS:
            raise ValueError(f"unknown propagation {propagation!r}; choose one of {list(PROPAGATIONS)}")
        obs_dim = ensemble.in_dim - action_spec.dim
        if obs_dim < 1:
            raise ValueError(f"ensemble reads {ensemble.in_dim} inputs, fewer than the {action_spec.dim} action dims + 1")
        if ensemble.out_dim not in (obs_dim, obs_dim + 1):
            raise ValueError(f"ensemble predicts {ensemble.out_dim} outputs; want {obs_dim} (delta obs) or {obs_dim + 1} "
                             f"(delta obs + reward) for {obs_dim}-dim observations")
        self.learned_reward = ensemble.out_dim == obs_dim + 1
        if reward_fn is None and not self.learned_reward:
            raise ValueError("PETSWorldModel needs a reward_fn or an ensemble that predicts the reward "
                             f"(out_dim {obs_dim + 1} = obs dims + 1); got out_dim {ensemble.out_dim} and no reward_fn")
        if encoder is not None and obs_shape is None:
            raise ValueError("PETSWorldModel: an encoder needs obs_shape, the frame shape it reads, e.g. (64, 64, 3)")
        self.ensemble, self.action_spec, self.propagation = ensemble, action_spec, propagation
        self.reward_fn, self.termination_fn = reward_fn, termination_fn
        self.encoder, self.decoder = encoder, decoder
        self.obs_dim = self.feature_dim = obs_dim
        self.obs_shape: tuple[int, ...] = tuple(obs_shape) if obs_shape is not None else (obs_dim,)
        self.generator: torch.Generator | None = None

    def _device(self) -> torch.device:
        return self.ensemble.input_mean.device

    def _generator(self) -> torch.Generator | None:
        """``generator`` on the weights' device (re-seeded from it after the model moved, e.g. ``.to("cuda")``)."""
        device = self._device()
        if self.generator is not None and self.generator.device != device:
            self.generator = torch.Generator(device=device).manual_seed(self.generator.initial_seed())
        return self.generator

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations ``(..., *obs_shape)`` -> model vectors ``(..., D)`` float32 (the encoder's latents, if any)."""
        n = len(self.obs_shape)
        if tuple(obs.shape[obs.dim() - n:]) != self.obs_shape:
            raise ValueError(f"PETS: observations {tuple(obs.shape)} do not end in obs_shape {self.obs_shape}")
        obs = obs.to(self._device())
        if self.encoder is None:
            return obs.float()
        lead = obs.shape[:obs.dim() - n]
        return self.encoder(obs.reshape(-1, *self.obs_shape)).float().reshape(*lead, self.obs_dim)

    def transitions(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor,
                    reward: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pairs for the ensemble: vectors ``(N, D)``, ``(N, A)``, ``(N, D)``, ``(N,)`` -> ``(inputs, targets)``.

        ``inputs = [obs, action] (N, D + A)``; ``targets = [next_obs - obs (, reward)] (N, O)`` (delta targets).
        """
        delta = next_obs - obs
        targets = torch.cat([delta, reward.unsqueeze(-1)], -1) if self.learned_reward else delta
        return torch.cat([obs, action], -1), targets

    # ------------------------------------------------------------------ worldmodels.core.WorldModel

    def initial(self, batch_size: int) -> State:
        device = self._device()
        zeros = torch.zeros(batch_size, device=device)
        return {"obs": torch.zeros(batch_size, self.obs_dim, device=device),
                "action": torch.zeros(batch_size, self.action_spec.dim, device=device),
                "reward": zeros, "cont": torch.ones_like(zeros), "disagreement": zeros.clone()}

    @torch.no_grad()
    def observe(self, obs: torch.Tensor, action: torch.Tensor | None, is_first: torch.Tensor,
                state: State | None = None) -> tuple[State, State]:
        """Encode ``obs (B, T, *obs_shape)``; each state's reward / cont is the model's for the step that reached it."""
        B, T = obs.shape[:2]
        device = self._device()
        x = self.encode(obs)  # (B, T, D)
        action = torch.zeros(B, T, self.action_spec.dim, device=device) if action is None else action.to(device).float()
        first = is_first.to(device).bool().clone()  # (B, T)
        if state is None:
            state, first[:, 0] = self.initial(B), True
        prev_obs = torch.cat([state["obs"].unsqueeze(1), x[:, :-1]], 1)  # (B, T, D): obs_{t-1}
        prev_action = torch.cat([state["action"].unsqueeze(1).float(), action[:, :-1]], 1)  # (B, T, A): a_{t-1}
        flat = lambda v: v.reshape(B * T, v.shape[-1])  # noqa: E731
        predicted = None
        if self.learned_reward:  # the expected reward over the elites (only the reward column is used)
            mean, _ = self.ensemble.predict(torch.cat([flat(prev_obs), flat(prev_action)], -1),
                                            self.ensemble.planning_members())
            predicted = mean.mean(0)
        reward, terminated = self._outcome(flat(prev_obs), flat(prev_action), flat(x), predicted)
        reward = torch.where(first, 0.0, reward.view(B, T))
        cont = torch.where(first, 1.0, 1.0 - terminated.view(B, T).float())
        states = {"obs": x, "action": action, "reward": reward, "cont": cont, "disagreement": torch.zeros_like(reward)}
        return states, {key: value[:, -1] for key, value in states.items()}

    def imagine(self, start: State, policy_or_actions: Union[LatentPolicy, torch.Tensor], horizon: int, *,
                keep_states: bool = True) -> Trajectory:
        """Propagate particles (rows) ``horizon`` steps; see the module docstring and :func:`worldmodels.core.rollout`.

        ``keep_states=True`` also records the ensemble disagreement of every step (it runs every elite on every row).
        """
        first = {**start, "slot": self._slots(start["obs"].shape[0])}
        first["member"] = first["slot"] // self._group(start["obs"].shape[0])
        step = functools.partial(self._step, track=keep_states)
        return rollout(self, step, first, policy_or_actions, horizon, keep_states=keep_states)

    def _group(self, rows: int) -> int:
        """Rows per elite when ``rows`` particles are spread evenly over the K elites: ``ceil(rows / K)``."""
        return -(-rows // self.ensemble.num_elites)

    def _slots(self, rows: int) -> torch.Tensor:
        """A random balanced assignment: row i runs in slot ``s_i`` of ``K * G``, i.e. member ``s_i // G`` ``(B,)``."""
        total = self.ensemble.num_elites * self._group(rows)
        return torch.randperm(total, generator=self._generator(), device=self._device())[:rows]

    def _assigned(self, inputs: torch.Tensor, slot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row through its own member only: ``inputs (B, I)`` -> ``(mean, std)`` ``(B, O)``.

        Rows are scattered into a ``(K, G, I)`` block (unused slots stay zero and are dropped), so one einsum
        per layer runs every member on its own rows: B rows of work, not K * B (Chua et al.'s TS batching).
        """
        B, I = inputs.shape
        K, G = self.ensemble.num_elites, self._group(B)
        block = inputs.new_zeros(K * G, I)
        block[slot] = inputs
        mean, std = self.ensemble.predict(block.view(K, G, I), self.ensemble.planning_members())  # (K, G, O)
        return mean.reshape(K * G, -1)[slot], std.reshape(K * G, -1)[slot]

    def _step(self, state: State, action: torch.Tensor, *, track: bool) -> tuple[State, torch.Tensor, torch.Tensor]:
        obs, alive = state["obs"], state["cont"]  # (B, D), (B,)
        B, D = obs.shape
        inputs = torch.cat([obs, action], -1)  # (B, D + A)
        disagreement = torch.zeros_like(alive)
        if self.propagation == "expectation" or track:  # every elite on every row: (K, B, O)
            every_mean, _ = self.ensemble.predict(inputs, self.ensemble.planning_members())
            disagreement = (every_mean[..., :D] / self.ensemble.target_std[:D]).std(0, correction=0).mean(-1)  # (B,)
        slot = state["slot"]
        if self.propagation == "expectation":
            out = every_mean.mean(0)  # (B, O): deterministic, no sampling
        else:
            if self.propagation == "ts1":  # a fresh bootstrap for every particle at every step
                slot = self._slots(B)
            mean, std = self._assigned(inputs, slot)
            out = mean + std * torch.randn(mean.shape, generator=self._generator(), device=obs.device)  # (B, O)
        next_obs = obs + out[:, :D]
        reward, terminated = self._outcome(obs, action, next_obs, out)
        moving = alive.unsqueeze(-1) > 0
        next_state = {"obs": torch.where(moving, next_obs, obs), "action": torch.zeros_like(action),
                      "reward": alive * reward, "cont": alive * (1.0 - terminated.float()),
                      "disagreement": alive * disagreement, "slot": slot, "member": slot // self._group(B)}
        return next_state, next_state["reward"], next_state["cont"]

    def _outcome(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor,
                 predicted: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(reward (B,), terminated (B,) bool)`` of ``obs -> next_obs``; ``predicted (B, O)`` holds a learned reward."""
        reward = self.reward_fn(obs, action, next_obs) if self.reward_fn is not None else predicted[:, self.obs_dim]
        if self.termination_fn is None:
            return reward.float(), torch.zeros(obs.shape[0], dtype=torch.bool, device=obs.device)
        return reward.float(), self.termination_fn(obs, action, next_obs).bool()

    def feature(self, states: State) -> torch.Tensor:
        return states["obs"]

    def decode(self, states: State) -> torch.Tensor:
        """Vector observations decode to themselves ``(..., D)``; latents need the ``decoder`` (frames)."""
        if self.encoder is None:
            return states["obs"]
        if self.decoder is None:
            raise ValueError("PETSWorldModel over latents decodes frames only with a decoder (pass decoder=...)")
        return self.decoder(states["obs"])

    def predict_reward(self, states: State) -> torch.Tensor:
        return states["reward"]

    def predict_cont(self, states: State) -> torch.Tensor:
        return states["cont"]

    # ------------------------------------------------------------------ KPI

    @torch.no_grad()
    def disagreement(self, start: State, actions: torch.Tensor) -> torch.Tensor:
        """Ensemble disagreement along ``actions (B, H, A)`` from ``start (B, ...)``: ``(B, H)``, step k -> s_{k+1}."""
        trajectory = self.imagine(start, actions, actions.shape[1], keep_states=True)
        return trajectory.states["disagreement"][:, 1:]
