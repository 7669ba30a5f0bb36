"""Pixel environments: ``make`` (one env), ``make_vector`` (a gymnasium ``VectorEnv``), ``ActionSpec``.

Every env gives uint8 ``(image_size, image_size, 3)`` RGB observations (or, asked with ``obs="vector"`` /
``"auto"``, the env's own 1-D Box observation as float32); see
:mod:`worldmodels.envs.factory` for the ALE / CarRacing / render-based families and
:class:`EnvOptions` for the options (Atari defaults: Machado et al. 2018).
"""

from worldmodels.envs.factory import agent_frameskip, is_atari, make, make_vector, protocol_options
from worldmodels.envs.options import ATARI_PROTOCOLS, EnvError, EnvOptions
from worldmodels.envs.spaces import ActionSpec

__all__ = ["ATARI_PROTOCOLS", "ActionSpec", "EnvError", "EnvOptions", "agent_frameskip", "is_atari", "make", "make_vector", "protocol_options"]
