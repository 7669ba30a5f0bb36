"""Training data: the online replay, the episode-store and latent data modules, the rank split, exact-resume draws.

Layer: the bottom of ``trainers``; imports only the library.
"""
