"""Dyna: learning from real AND model-simulated experience. Tabular Dyna-Q (:mod:`worldmodels.dyna.tabular`)."""

from worldmodels.dyna.tabular import DYNA_MAZE, DynaQ, GridWorld, run_dyna_q

__all__ = ["DYNA_MAZE", "DynaQ", "GridWorld", "run_dyna_q"]
