"""Per-step latency of an exported policy: onnxruntime vs the torch policy, batch 1, one thread (docs/onnx.md).

    .venv/bin/python docs/examples/onnx_latency.py MODEL ONNX_DIR [--steps 300]

MODEL is what ``wm export --format onnx --checkpoint MODEL --out ONNX_DIR`` exported. Both play the same random
frames; the first 20 steps of each are warm-up. This one needs torch (it times it); onnx_policy.py does not.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import worldmodels

parser = argparse.ArgumentParser()
parser.add_argument("model")
parser.add_argument("onnx_dir")
parser.add_argument("--steps", type=int, default=300)
args = parser.parse_args()
torch.set_num_threads(1)
spec = json.loads((Path(args.onnx_dir) / "policy.onnx.json").read_text())
options = ort.SessionOptions()
options.intra_op_num_threads = options.inter_op_num_threads = 1
session = ort.InferenceSession(str(Path(args.onnx_dir) / spec["onnx"]), options, providers=["CPUExecutionProvider"])
names, inputs = [o["name"] for o in spec["outputs"]], {i["name"]: i for i in spec["inputs"]}
rng = np.random.default_rng(0)
frames = rng.integers(0, 256, (args.steps, 1, *spec["obs_shape"]), dtype=np.uint8)
state = {name: np.asarray(value, np.float32)[None] for name, value in spec["initial_state"].items()}
policy, torch_state, warm = worldmodels.load(args.model).policy(), None, 20
for t in range(args.steps):
    if t == warm:
        started = time.perf_counter()
    feed = {"obs": frames[t], "is_first": np.array([t == 0]), **state}
    if "uniform" in inputs:
        feed["uniform"] = rng.random((1, inputs["uniform"]["shape"][1]), dtype=np.float32)
    out = dict(zip(names, session.run(None, feed)))
    state = {name: out[output] for name, output in spec["state"].items()}
onnx_ms = (time.perf_counter() - started) / (args.steps - warm) * 1e3
for t in range(args.steps):
    if t == warm:
        started = time.perf_counter()
    _, torch_state = policy.act(torch.from_numpy(frames[t]), torch.tensor([t == 0]), torch_state)
torch_ms = (time.perf_counter() - started) / (args.steps - warm) * 1e3
print(f"{args.model}: onnxruntime {onnx_ms:.2f} ms/step, torch {torch_ms:.2f} ms/step (batch 1, 1 thread)")
