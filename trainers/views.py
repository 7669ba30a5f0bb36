"""WorldModelView: one protocol through which callbacks and ``wm dream`` see any world-model family."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class WorldModelView(Protocol):
    def reconstruct(self, obs: torch.Tensor) -> torch.Tensor: ...
    def open_loop(self, obs: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor, context: int) -> dict: ...
    def dream(self, obs: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor, horizon: int) -> dict: ...


def view_for_module(pl_module: Any) -> WorldModelView:
    if hasattr(pl_module, "world_model_view"):
        return pl_module.world_model_view()
    raise TypeError(f"no WorldModelView for {type(pl_module).__name__}")
