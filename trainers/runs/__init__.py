"""Runs: the run skeleton, each family's training loop or stages and config, fine-tuning, checkpoints on disk.

Layer: builds on :mod:`trainers.modules` and :mod:`trainers.data`; only :mod:`trainers.bench` and the commands
import it.
"""
