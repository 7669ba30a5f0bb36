"""A TD-MPC2-style value-equivalent world model (no decoder), planned with MPPI + value bootstrap + policy prior."""

from worldmodels.tdmpc.model import (MODEL_LOSS_PARTS, PriorHead, RunningScale, SimNorm, TDMPCWorldModel, model_loss,
                                     prior_loss, valid_transitions)

__all__ = ["MODEL_LOSS_PARTS", "PriorHead", "RunningScale", "SimNorm", "TDMPCWorldModel", "model_loss", "prior_loss",
           "valid_transitions"]
