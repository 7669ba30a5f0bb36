"""Tabular Dyna-Q (Sutton & Barto 2018, sec. 8.2) on the Dyna maze: planning saves real steps."""

import pytest

from worldmodels.dyna import DynaQ, GridWorld, run_dyna_q

SHORTEST_PATH = 14  # S (row 2, col 0) to G (row 0, col 8) around the walls of Figure 8.2


def test_grid_world_is_deterministic_and_walls_block():
    env = GridWorld()
    assert env.reset() == env.start
    state, reward, done = env.step(2)  # left from column 0: off the grid, stays
    assert (state, reward, done) == (env.start, 0.0, False)
    env.step(3)  # right to column 1
    state, _, _ = env.step(3)  # right again: column 2 of row 2 is a wall
    assert state == env.start + 1
    with pytest.raises(ValueError, match="action must be in 0..3"):
        env.step(4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dyna_q_reaches_goal_in_fewer_real_steps_than_q_learning(seed):
    q_learning = run_dyna_q(GridWorld(), episodes=10, planning_steps=0, seed=seed)
    dyna = run_dyna_q(GridWorld(), episodes=10, planning_steps=50, seed=seed)
    # Acting and planning use separate random streams and Q stays all zeros until the goal is first found,
    # so both agents take exactly the same first episode: the comparison below is the planning's alone.
    assert dyna[0] == q_learning[0]
    # After one success, one-step Q-learning moves the goal's value back ONE cell per visit, so episodes 2-10
    # are still long random walks (2,500-4,800 steps in all over seeds 0-7); 50 planning updates per real step
    # spread it over the whole remembered maze, so Dyna-Q walks near-shortest paths (160-210 steps in all,
    # 13-30x fewer). A factor 5 leaves a wide margin either way.
    assert 5 * sum(dyna[1:]) < sum(q_learning[1:]), (dyna, q_learning)
    # epsilon = 0.1 exploration adds detours to the 14-step shortest path; 25 steps per episode on average is
    # far below anything a random walk achieves (hundreds) and above every seed's Dyna-Q average (18-23).
    assert sum(dyna[1:]) < 9 * 25 and min(dyna[1:]) >= SHORTEST_PATH, dyna


def test_dyna_q_rejects_negative_planning_steps():
    with pytest.raises(ValueError, match="planning_steps must be >= 0"):
        DynaQ(4, 2, planning_steps=-1)
