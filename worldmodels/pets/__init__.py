"""PETS (Chua et al. 2018): a probabilistic ensemble of dynamics networks, planned over by any planner.

- :mod:`worldmodels.pets.ensemble`     :class:`ProbabilisticEnsemble`, E members in one batched layer
- :mod:`worldmodels.pets.world_model`  :class:`PETSWorldModel`, the ensemble as a ``core.WorldModel``
  (TS1 / TS-inf / expectation propagation, vectors or an encoder's latents)
- :mod:`worldmodels.pets.tasks`        known reward and termination functions per env id
- :mod:`worldmodels.pets.envs`         the vector-observation envs PETS acts in (``make_state_env``)
- :mod:`worldmodels.pets.family`       the exchange format and the ``"pets"`` entry of ``worldmodels.registry``

Training (the optimiser) and the online loop live in :mod:`trainers.runs.pets`.
"""

from worldmodels.pets.ensemble import EnsembleLinear, ProbabilisticEnsemble, bootstrap_indices
from worldmodels.pets.world_model import PROPAGATIONS, PETSWorldModel

__all__ = ["PROPAGATIONS", "EnsembleLinear", "PETSWorldModel", "ProbabilisticEnsemble", "bootstrap_indices"]
