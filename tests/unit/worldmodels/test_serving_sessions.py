"""The serving batcher: state merge/split, batched vs unbatched stepping, the session cap and idle expiry."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from model_fixtures import tiny_worldmodels
from worldmodels.envs.spaces import ActionSpec
from worldmodels.registry import load
from worldmodels.serving.sessions import ServeError, SessionPool, SessionSettings, act_batch, merge_states, split_state

SPEC = ActionSpec("discrete", 3)


class RunningMeanPolicy:
    """A recurrent policy whose every op is row-wise elementwise, so batching cannot change a single bit.

    State ``{"mean": (B, C), "count": (B,)}``: the running mean colour of the frames seen; action = argmax.
    """

    action_spec = SPEC

    def initial(self, batch_size: int):
        return None

    def act(self, obs, is_first, state):
        colour = obs.float().mean(dim=(1, 2))  # (B, C)
        if state is None:
            mean, count = torch.zeros_like(colour), torch.zeros(obs.shape[0])
        else:
            keep = (~is_first).float()  # (B,): is_first restarts the carry, as the Policy contract says
            mean, count = state["mean"] * keep[:, None], state["count"] * keep
        count = count + 1
        mean = mean + (colour - mean) / count[:, None]
        action = torch.nn.functional.one_hot(mean.argmax(-1), 3).float()
        return action, {"mean": mean, "count": count}


def frames(sessions: int, steps: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (sessions, steps, size, size, 3), dtype=torch.uint8, generator=generator)


def unbatched(policy, obs: torch.Tensor):
    """One session stepped alone: ``obs (T, H, W, C)`` -> (actions (T, A), last state)."""
    state, actions = None, []
    for t in range(obs.shape[0]):
        action, state = policy.act(obs[t:t + 1], torch.tensor([t == 0]), state)
        actions.append(action)
    return torch.cat(actions), state


def staggered(policy, obs: torch.Tensor, starts: list[int]):
    """Sessions ``i`` joining at step ``starts[i]``, all live sessions stepped in one act_batch per step."""
    S, T = obs.shape[:2]
    states, actions, seen = [None] * S, [[] for _ in range(S)], [0] * S
    for tick in range(T + max(starts)):
        live = [i for i in range(S) if starts[i] <= tick and seen[i] < T]
        if not live:
            continue
        action, new = act_batch(policy, torch.stack([obs[i, seen[i]] for i in live]), [states[i] for i in live])
        for row, i in enumerate(live):
            states[i] = new[row]
            actions[i].append(action[row:row + 1])
            seen[i] += 1
    return [torch.cat(a) for a in actions], states


def test_merge_then_split_is_the_identity_bit_for_bit():
    states = [{"h": torch.randn(1, 5), "z": torch.randn(1, 2, 3)}, None, {"h": torch.randn(1, 5), "z": torch.randn(1, 2, 3)}]
    merged, is_first = merge_states(states)
    assert merged["h"].shape == (3, 5) and merged["z"].shape == (3, 2, 3)
    assert is_first.tolist() == [False, True, False]
    back = split_state(merged, 3)
    for before, after in zip(states, back):
        if before is not None:
            assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(back[1]["h"], torch.zeros(1, 5))  # the placeholder of a first step
    assert merge_states([None, None])[0] is None  # all first steps: the policy gets None, as from the driver
    hold = [(torch.ones(1, 3), torch.tensor([2])), (torch.zeros(1, 3), torch.tensor([0]))]  # HoldRandomPolicy's tuple
    merged, _ = merge_states(hold)
    assert merged[0].shape == (2, 3) and merged[1].tolist() == [2, 0]


def test_batched_stepping_equals_unbatched_bit_for_bit():
    policy, obs = RunningMeanPolicy(), frames(5, 6)
    actions, states = staggered(policy, obs, starts=[0, 0, 2, 3, 5])  # sessions join mid-way: None rows mix in
    for i in range(5):
        ref_actions, ref_state = unbatched(policy, obs[i])
        assert torch.equal(actions[i], ref_actions)
        assert all(torch.equal(states[i][k], ref_state[k]) for k in ref_state), f"session {i} state differs"


def test_real_model_first_step_placeholder_is_the_fresh_state(tmp_path):
    """A session's first step in a batch with older sessions is bit for bit the step it takes among new ones."""
    tiny_worldmodels(tmp_path / "m")
    policy = load(tmp_path / "m").policy()
    policy.world_model.sample_latent = False  # posterior mean: no noise, so the comparison is deterministic
    obs = frames(3, 2, size=16)
    _, older = act_batch(policy, obs[:, 0], [None, None, None])
    mixed_actions, mixed = act_batch(policy, obs[:, 1], [older[0], None, None])  # row 0 carries a state
    fresh_actions, fresh = act_batch(policy, obs[:, 1], [None, None, None])  # the same batch size: same kernels
    assert torch.equal(mixed_actions[1:], fresh_actions[1:])
    for k in fresh[1]:
        assert torch.equal(mixed[1][k], fresh[1][k]) and torch.equal(mixed[2][k], fresh[2][k])


def test_real_model_batched_matches_unbatched(tmp_path):
    tiny_worldmodels(tmp_path / "m")
    policy = load(tmp_path / "m").policy()
    policy.world_model.sample_latent = False
    obs = frames(4, 4, size=16)
    actions, states = staggered(policy, obs, starts=[0, 1, 1, 3])
    for i in range(4):
        ref_actions, ref_state = unbatched(policy, obs[i])
        assert torch.equal(actions[i], ref_actions)
        for k in ref_state:  # a (B, K) GEMM and a (1, K) one sum in different orders: float32 round-off only
            assert torch.allclose(states[i][k], ref_state[k], atol=1e-5, rtol=0), f"session {i} {k}"


def test_pool_batches_concurrent_sessions_and_counts_steps():
    pool = SessionPool(RunningMeanPolicy(), SessionSettings(max_wait_ms=200, max_batch=8))
    try:
        ids = [pool.create().id for _ in range(6)]
        obs = frames(6, 1)[:, 0].numpy()
        # Queued together: the worker waits up to 200 ms after the first, far longer than 6 submits take.
        futures = [pool.submit(session_id, obs[i]) for i, session_id in enumerate(ids)]
        results = [future.result(timeout=10) for future in futures]
        assert all(isinstance(action, int) and step == 0 for action, step in results)
        assert pool.act(ids[0], obs[0], timeout=10)[1] == 1
        stats = pool.stats()
        assert stats["max_batch_seen"] > 1 and stats["acts"] == 7, stats
    finally:
        pool.close()


def test_one_act_in_flight_per_session():
    gate = threading.Event()

    class Slow(RunningMeanPolicy):
        def act(self, obs, is_first, state):
            gate.wait(10)
            return super().act(obs, is_first, state)

    pool = SessionPool(Slow(), SessionSettings(max_wait_ms=0))
    try:
        session = pool.create()
        first = pool.submit(session.id, np.zeros((8, 8, 3), np.uint8))
        with pytest.raises(ServeError) as info:
            pool.submit(session.id, np.zeros((8, 8, 3), np.uint8))
        assert info.value.status == 409
        gate.set()
        assert first.result(timeout=10)[1] == 0
    finally:
        gate.set()
        pool.close()


def test_session_cap_and_idle_expiry():
    now = [0.0]
    pool = SessionPool(RunningMeanPolicy(), SessionSettings(max_sessions=2, idle_timeout_s=10), clock=lambda: now[0])
    try:
        a, b = pool.create(), pool.create()
        with pytest.raises(ServeError) as info:
            pool.create()
        assert info.value.status == 429 and "--max-sessions 2" in info.value.message
        now[0] = 5.0
        pool.act(a.id, np.zeros((8, 8, 3), np.uint8), timeout=10)  # a is used at t = 5, b last at t = 0
        now[0] = 12.0  # b idle 12 s > 10 s: expired; a idle 7 s: kept
        assert len(pool) == 1 and pool.get(a.id) is a
        with pytest.raises(ServeError) as info:
            pool.get(b.id)
        assert info.value.status == 404 and "idle" in info.value.message
        pool.create()  # the expired session no longer counts against the cap
        assert pool.stats()["expired"] == 1
    finally:
        pool.close()


def test_non_finite_or_huge_wait_is_refused():
    """``max_wait_ms`` inf killed the batcher on the first act (queue timeout overflow), 1e12 never answered."""
    for wait in (float("inf"), float("nan"), 1e12):
        with pytest.raises(ValueError, match="max_wait_ms"):
            SessionPool(RunningMeanPolicy(), SessionSettings(max_wait_ms=wait))
    with pytest.raises(ValueError, match="idle_timeout_s"):
        SessionPool(RunningMeanPolicy(), SessionSettings(idle_timeout_s=float("nan")))


def test_a_fault_of_the_batcher_fails_its_requests_and_the_batcher_lives_on():
    pool = SessionPool(RunningMeanPolicy(), SessionSettings(max_wait_ms=0))
    try:
        session = pool.create()
        real, calls = pool._collect, []

        def broken(batch):  # a bug in the batcher itself, outside the policy's forward pass
            calls.append(len(batch))
            if len(calls) == 1:
                raise OverflowError("timeout value is too large")
            return real(batch)

        pool._collect = broken
        with pytest.raises(ServeError) as info:  # answered, not left hanging
            pool.act(session.id, np.zeros((8, 8, 3), np.uint8), timeout=5)
        assert info.value.status == 500 and "OverflowError" in info.value.message, info.value.message
        assert "\n" not in info.value.message
        assert pool.act(session.id, np.zeros((8, 8, 3), np.uint8), timeout=5)[1] == 0  # same session, next act
    finally:
        pool.close()
