"""worldmodels: world models with latent imagination (World Models V+M+C and Dreamer)."""

__version__ = "0.1.0"
