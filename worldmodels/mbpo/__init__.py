"""MBPO (Janner et al. 2019): SAC fed with short model rollouts branched from real states (:mod:`.loop`, :mod:`.sac`)."""

from worldmodels.mbpo.loop import (MBPOLoop, MBPOSettings, RealTransitions, TransitionReplay, branched_rollouts,
                                   mixed_batch, rollout_length, run_mbpo)
from worldmodels.mbpo.sac import SAC, SAC_LOSS_PARTS, SACPolicy, TwinQ, sac_losses

__all__ = ["MBPOLoop", "MBPOSettings", "RealTransitions", "SAC", "SACPolicy", "SAC_LOSS_PARTS", "TransitionReplay",
           "TwinQ", "branched_rollouts", "mixed_batch", "rollout_length", "run_mbpo", "sac_losses"]
