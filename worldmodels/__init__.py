"""worldmodels: world models with latent imagination (World Models V+M+C and Dreamer).

``worldmodels.load(name_or_path)`` reads any family's checkpoint (see :mod:`worldmodels.registry`); it is
looked up on first use so that ``import worldmodels`` itself stays light (no torch until a model is loaded).
"""

from worldmodels.version import __version__  # noqa: F401 - the package version


def load(name_or_path, device="cpu", *, allow_unverified=False):
    """:func:`worldmodels.registry.load`: a world model and its policy from a shipped name, a directory or a run."""
    from worldmodels.registry import load as _load  # deferred: keeps `import worldmodels` free of torch

    return _load(name_or_path, device, allow_unverified=allow_unverified)
