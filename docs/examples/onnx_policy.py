"""Play a policy exported by ``wm export --format onnx`` with numpy + onnxruntime only (no torch; docs/onnx.md).

    python onnx_policy.py DIR [--steps 50] [--frames env|random] [--seed 0]

``--frames env`` plays the spec's ALE env (gymnasium, ale-py, opencv: frameskip with the last two frames
max-pooled, INTER_AREA resize, as ``worldmodels.envs.make`` does; its no-op starts are left out); ``random``
feeds random frames and needs no env.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

parser = argparse.ArgumentParser()
parser.add_argument("dir")
parser.add_argument("--steps", type=int, default=50)
parser.add_argument("--frames", choices=("env", "random"), default="env")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
spec = json.loads((Path(args.dir) / "policy.onnx.json").read_text())
session = ort.InferenceSession(str(Path(args.dir) / spec["onnx"]), providers=["CPUExecutionProvider"])
outputs, inputs = [o["name"] for o in spec["outputs"]], {i["name"]: i for i in spec["inputs"]}
rng = np.random.default_rng(args.seed)
state = {name: np.asarray(value, np.float32)[None] for name, value in spec["initial_state"].items()}  # batch of 1

if args.frames == "env":
    import ale_py
    import cv2
    import gymnasium as gym

    gym.register_envs(ale_py)
    options, side = spec["env_options"], spec["obs_shape"][0]
    skip = options.get("frameskip") or 4
    env = gym.make(spec["env_id"], frameskip=1, repeat_action_probability=options.get("sticky_action_prob", 0.25))

    def env_step(action):
        total, frames = 0.0, []
        for _ in range(skip):
            frame, reward, terminated, truncated, _ = env.step(action)
            total, frames = total + float(reward), [*frames[-1:], frame]
            if terminated or truncated:
                break
        pooled = np.maximum(*frames) if options.get("maxpool") and len(frames) == 2 else frames[-1]
        return pooled, total, terminated or truncated

    frame = env.reset(seed=args.seed)[0]

total, is_first = 0.0, True
for t in range(args.steps):
    if args.frames == "env":
        obs = cv2.resize(frame, (side, side), interpolation=cv2.INTER_AREA)[None]
    else:
        obs = rng.integers(0, 256, (1, *spec["obs_shape"]), dtype=np.uint8)
    feed = {"obs": obs, "is_first": np.array([is_first]), **state}
    if "uniform" in inputs:  # the Dreamer posterior's draw: fresh uniforms each step
        feed["uniform"] = rng.random((1, inputs["uniform"]["shape"][1]), dtype=np.float32)
    out = dict(zip(outputs, session.run(None, feed)))
    state = {name: out[output] for name, output in spec["state"].items()}  # the recurrent state, fed back
    action = out[spec["action"]["env_action"]][0]
    reward, is_first = 0.0, False
    if args.frames == "env":
        frame, reward, done = env_step(int(action) if spec["action"]["kind"] == "discrete" else action)
        if done:
            print(f"episode ends at step {t}: return {total + reward:+.0f}")
            frame, is_first = env.reset()[0], True
    total += reward
    if t % 10 == 0 or t == args.steps - 1:
        print(f"step {t}: action {action} reward {reward:+.0f} return {total:+.0f}")
print(f"{args.steps} steps of {spec['env_id'] if args.frames == 'env' else 'random frames'}: return {total:+.0f}")
