"""The online replay keeps to the run's env-step budget: a run that reports N agent steps trained on at most N."""

from __future__ import annotations

from trainers.data.online import OnlineReplay
from worldmodels.envs.toy import CATCH_ID
from worldmodels.policies import RandomPolicy


def _replay(max_env_steps):
    replay = OnlineReplay(CATCH_ID, None, num_envs=1, batch_size=2, seq_len=4, replay_ratio=8.0, prefill=10,
                          capacity=1000, seed=0, env_options={"image_size": 16})
    replay.agent = RandomPolicy(replay.action_spec, seed=0)
    replay.checkpoint_every = 1  # every batch makes a checkpoint due: each would play on to its episode's end
    replay.max_env_steps = max_env_steps
    return replay


def test_the_play_on_before_a_checkpoint_stops_at_the_step_budget():
    replay = _replay(max_env_steps=23)
    try:
        for _ in range(20):
            replay.next_batch()
            assert replay.env_steps <= 23
        assert replay.env_steps == 23  # batches past the budget sample the replay without acting
    finally:
        replay.env.close()


def test_without_a_budget_the_play_on_ends_each_due_batch_between_two_episodes():
    replay = _replay(max_env_steps=None)
    try:
        for _ in range(20):
            replay.next_batch()
            assert replay.resumable  # the checkpoint after each batch resumes exactly
        assert replay.env_steps > 23  # so the budget above did cut the play-on short
    finally:
        replay.env.close()
