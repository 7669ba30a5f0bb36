"""Tabular Dyna-Q (Sutton & Barto 2018, sec. 8.2, "Tabular Dyna-Q") on a small deterministic grid world.

A reference for the Dyna idea the MBPO loop scales up: every REAL step does

    (d) direct RL:  Q(S, A) <- Q(S, A) + alpha [R + gamma max_a Q(S', a) - Q(S, A)]      (Q-learning, eq. 6.8)
    (e) model:      Model(S, A) <- (R, S')                                             (deterministic env)
    (f) planning:   n times: S, A drawn uniformly from the pairs seen so far, (R, S') = Model(S, A),
                    and the same Q-learning update on the simulated transition

``planning_steps=0`` is plain one-step Q-learning. Pure Python: the table is a list of lists and all
randomness comes from seeded :class:`random.Random` streams, so a run is reproducible bit for bit. Acting and
planning draw from separate streams: with the same seed, Dyna-Q and Q-learning take the SAME first episode
(the table stays all zeros until the goal is first reached), so any later difference is the planning's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# Sutton & Barto's Dyna maze (Figure 8.2): 6 rows x 9 columns, S start, G goal, # walls.
DYNA_MAZE = (
    ".......#G",
    "..#....#.",
    "S.#....#.",
    "..#......",
    ".....#...",
    ".........",
)
MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right


class GridWorld:
    """A deterministic grid: ``reset() -> state``, ``step(action) -> (state, reward, done)``.

    States are cell indices ``row * columns + column``. Moving into a wall or off the grid leaves the agent
    in place. Reaching ``G`` gives reward 1 and ends the episode; every other step gives 0.
    """

    def __init__(self, layout: tuple[str, ...] = DYNA_MAZE) -> None:
        widths = {len(line) for line in layout}
        if len(widths) != 1 or sum(line.count("S") for line in layout) != 1 or sum(line.count("G") for line in layout) != 1:
            raise ValueError("grid layout must be equal-width rows with exactly one 'S' and one 'G'")
        self.layout, self.rows, self.columns = layout, len(layout), widths.pop()
        self.num_states, self.num_actions = self.rows * self.columns, len(MOVES)
        cells = [(r, c, ch) for r, line in enumerate(layout) for c, ch in enumerate(line)]
        self.start = next(r * self.columns + c for r, c, ch in cells if ch == "S")
        self.goal = next(r * self.columns + c for r, c, ch in cells if ch == "G")
        self.state = self.start

    def reset(self) -> int:
        self.state = self.start
        return self.state

    def step(self, action: int) -> tuple[int, float, bool]:
        if not 0 <= action < self.num_actions:
            raise ValueError(f"action must be in 0..{self.num_actions - 1}, got {action}")
        row, column = divmod(self.state, self.columns)
        r, c = row + MOVES[action][0], column + MOVES[action][1]
        if 0 <= r < self.rows and 0 <= c < self.columns and self.layout[r][c] != "#":
            self.state = r * self.columns + c
        done = self.state == self.goal
        return self.state, float(done), done


@dataclass
class DynaQ:
    """Tabular Dyna-Q with an epsilon-greedy behaviour policy (greedy ties broken at random)."""

    num_states: int
    num_actions: int
    planning_steps: int = 50
    alpha: float = 0.1
    gamma: float = 0.95
    epsilon: float = 0.1
    seed: int = 0
    q: list[list[float]] = field(init=False)
    model: dict[tuple[int, int], tuple[float, int, bool]] = field(init=False)

    def __post_init__(self) -> None:
        if self.planning_steps < 0:
            raise ValueError(f"planning_steps must be >= 0, got {self.planning_steps}")
        self.q = [[0.0] * self.num_actions for _ in range(self.num_states)]
        self.model = {}
        self._seen: list[tuple[int, int]] = []  # model keys in insertion order: O(1) uniform draws
        self.rng = random.Random(self.seed)  # behaviour policy
        self.planning_rng = random.Random(self.seed + 1)  # model queries: never shifts the behaviour stream

    def act(self, state: int) -> int:
        if self.rng.random() < self.epsilon:
            return self.rng.randrange(self.num_actions)
        values = self.q[state]
        best = max(values)
        return self.rng.choice([a for a, v in enumerate(values) if v == best])

    def update(self, state: int, action: int, reward: float, next_state: int, done: bool) -> None:
        """One Q-learning update (eq. 6.8); a terminal next state has value 0."""
        target = reward + (0.0 if done else self.gamma * max(self.q[next_state]))
        self.q[state][action] += self.alpha * (target - self.q[state][action])

    def learn(self, state: int, action: int, reward: float, next_state: int, done: bool) -> None:
        """Steps (d), (e) and (f) of Tabular Dyna-Q for one real transition."""
        self.update(state, action, reward, next_state, done)
        if (state, action) not in self.model:
            self._seen.append((state, action))
        self.model[(state, action)] = (reward, next_state, done)
        for _ in range(self.planning_steps):
            s, a = self._seen[self.planning_rng.randrange(len(self._seen))]
            self.update(s, a, *self.model[(s, a)])


def run_dyna_q(env: GridWorld, *, episodes: int, planning_steps: int, seed: int = 0,
               max_steps_per_episode: int = 10_000, **agent_kwargs: float) -> list[int]:
    """Real steps taken in each of ``episodes`` episodes (the curve of Sutton & Barto's Figure 8.2)."""
    agent = DynaQ(env.num_states, env.num_actions, planning_steps=planning_steps, seed=seed, **agent_kwargs)
    lengths = []
    for _ in range(episodes):
        state, steps, done = env.reset(), 0, False
        while not done and steps < max_steps_per_episode:
            action = agent.act(state)
            next_state, reward, done = env.step(action)
            agent.learn(state, action, reward, next_state, done)
            state, steps = next_state, steps + 1
        lengths.append(steps)
    return lengths
