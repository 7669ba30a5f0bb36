"""Serving a loaded model's policy over HTTP (``wm serve``): sessions batched into shared forward passes.

- :mod:`worldmodels.serving.sessions`: :class:`SessionPool`, the per-session recurrent state and the batcher.
- :mod:`worldmodels.serving.app`: :func:`create_app`, the FastAPI app (endpoints, decoding, auth, errors).
- :mod:`worldmodels.serving.connections`: the header timeout and connection cap of ``wm serve``'s uvicorn server.
"""

from worldmodels.serving.app import create_app, model_card
from worldmodels.serving.sessions import ServeError, Session, SessionPool, SessionSettings, act_batch

__all__ = ["ServeError", "Session", "SessionPool", "SessionSettings", "act_batch", "create_app", "model_card"]
