"""Lightning modules and callbacks: the Dreamer agent, World Models' V and M, the learner step and its guards.

Layer: may import :mod:`trainers.data`, never :mod:`trainers.runs` or :mod:`trainers.bench`.
"""
