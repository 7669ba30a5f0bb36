"""``wm bench``'s kinds: model, collection, replay and profile benchmarks, and the fine-tuning benchmark.

Layer: may import :mod:`trainers.runs`, :mod:`trainers.modules` and :mod:`trainers.data`; nothing imports it
but the commands (the ``trainers`` layers contract in ``pyproject.toml``).
"""
