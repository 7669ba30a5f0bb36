"""Decision-time planners over any :class:`~worldmodels.core.WorldModel` (issue 13): MPC that acts as a Policy.

Every planner implements :class:`~worldmodels.core.Planner` (``horizon``, ``plan(world_model, state)``) through
:class:`~worldmodels.planning.base.SamplingPlanner`: one batched ``imagine`` call scores every env x
candidate x particle, with warm starts, an optional terminal value and an optional policy prior. Wrap one in
:class:`worldmodels.policies.PlannerPolicy` to act in an env. :data:`PLANNERS` is the registry ``wm plan`` reads.
"""

from __future__ import annotations

from worldmodels.planning.base import SamplingPlanner, discounted_return, score_candidates, shift_plan
from worldmodels.planning.cem import CEM
from worldmodels.planning.icem import ICEM
from worldmodels.planning.mppi import MPPI
from worldmodels.planning.shooting import RandomShooting

PLANNERS: dict[str, type[SamplingPlanner]] = {"shooting": RandomShooting, "cem": CEM, "icem": ICEM, "mppi": MPPI}

__all__ = ["CEM", "ICEM", "MPPI", "PLANNERS", "RandomShooting", "SamplingPlanner", "discounted_return",
           "score_candidates", "shift_plan"]
