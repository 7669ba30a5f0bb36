"""The model families in the exchange format: how each one's modules are sized, built, saved and read back.

Each family module knows its own components and directory layouts; :mod:`worldmodels.registry` lists them
in one dict literal and :func:`worldmodels.load` reads any of them.
"""
