"""Load-test a running ``wm serve``: N concurrent clients, each with its own session, act in a loop for T seconds.

Each client opens a session, then sends observations (random uint8 frames of the model's ``obs_shape``, or
float32 vectors for a vector model) one after the other, each as soon as the previous action came back,
until ``--seconds`` have passed; then deletes its session. Prints (and returns) JSON: requests, errors, throughput, p50/p99/mean/max latency, and
the server's batching counters from ``GET /v1/stats``; exits 1 (one line on stderr) when every request failed.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from worldmodels.config import arg
from worldmodels.serving.tokens import token_from

ENCODINGS = ("bytes", "json", "png")
@dataclass
class ServeLoadConfig:
    url: str = arg("http://127.0.0.1:8000", "base URL of the server (what `wm serve` printed)")
    clients: int = arg(8, "concurrent clients, one session each", minimum=1, maximum=1024)
    seconds: float = arg(20.0, "how long every client keeps acting", above=0.0, maximum=86_400.0)
    token: str = arg("", "bearer token; empty = $WM_SERVE_TOKEN, else none")
    encoding: str = arg("bytes", "observation encoding: raw bytes, JSON nested lists or PNG", choices=ENCODINGS)
    frames: int = arg(16, "distinct random frames each client cycles through", minimum=1, maximum=4096)
    seed: int = arg(0, "seed of the random frames", minimum=0, maximum=2**32 - 1)
    out: str = arg("", "also write the JSON result to this path")


CONFIG = ServeLoadConfig


def encode(frame: np.ndarray, encoding: str) -> tuple[bytes, str]:
    """``frame (H, W, C)`` uint8 or a vector ``(D,)`` float32 -> (request body, Content-Type)."""
    if frame.dtype == np.float32 and encoding == "bytes":
        return frame.astype("<f4").tobytes(), "application/octet-stream"  # the server reads little-endian float32
    if encoding == "json":
        return json.dumps({"obs": frame.tolist()}).encode(), "application/json"
    if encoding == "png":
        from PIL import Image  # deferred: only the PNG encoding needs Pillow

        buffer = io.BytesIO()
        Image.fromarray(frame.squeeze(-1) if frame.shape[-1] == 1 else frame).save(buffer, format="PNG")
        return buffer.getvalue(), "image/png"
    return frame.tobytes(), "application/octet-stream"


async def _client(client, bodies: list[tuple[bytes, str]], deadline: float, latencies: list[float],
                  errors: list[str]) -> None:
    try:
        response = await client.post("/v1/sessions")
        response.raise_for_status()
        session = response.json()["session_id"]
    except Exception as error:  # noqa: BLE001 - a failed client is counted, the others carry on
        errors.append(f"session: {type(error).__name__}: {error}")
        return
    k = 0
    while time.perf_counter() < deadline:
        body, media = bodies[k % len(bodies)]
        start = time.perf_counter()
        try:
            response = await client.post(f"/v1/sessions/{session}/act", content=body, headers={"content-type": media})
            ok = response.status_code == 200
        except Exception as error:  # noqa: BLE001
            ok, response = False, error
        if ok:
            latencies.append(time.perf_counter() - start)
        else:
            errors.append(str(getattr(response, "text", response))[:200])
        k += 1
    try:
        await client.delete(f"/v1/sessions/{session}")
    except Exception as error:  # noqa: BLE001
        errors.append(f"delete: {type(error).__name__}: {error}")


async def measure(config: ServeLoadConfig) -> dict:
    import httpx  # deferred: only the load test needs the HTTP client

    token = token_from(config.token)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    limits = httpx.Limits(max_connections=config.clients + 2, max_keepalive_connections=config.clients + 2)
    async with httpx.AsyncClient(base_url=config.url, headers=headers, limits=limits, timeout=30.0) as client:
        try:
            card = await client.get("/v1/model")
        except httpx.HTTPError as error:
            raise ValueError(f"cannot reach {config.url} ({type(error).__name__}: {error}); start `wm serve` and "
                             f"pass the URL it printed as --url") from None
        if card.status_code != 200:
            raise ValueError(f"GET {config.url}/v1/model answered {card.status_code}: {card.text[:200]}")
        shape = tuple(card.json()["obs_shape"])  # (H, W, C) uint8 frames or (D,) float32 vectors
        rng = np.random.default_rng(config.seed)
        if card.json().get("obs_dtype") == "float32":
            if config.encoding == "png":
                raise ValueError(f"--encoding png sends images, but {config.url} serves a model of {shape[0]}-float "
                                 f"vectors; use --encoding bytes or json")
            obs = [rng.standard_normal(shape).astype(np.float32) for _ in range(config.frames)]
        else:
            obs = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(config.frames)]
        bodies = [encode(o, config.encoding) for o in obs]
        before = (await client.get("/v1/stats")).json()
        latencies: list[float] = []
        errors: list[str] = []
        start = time.perf_counter()
        await asyncio.gather(*(_client(client, bodies, start + config.seconds, latencies, errors)
                               for _ in range(config.clients)))
        elapsed = time.perf_counter() - start
        after = (await client.get("/v1/stats")).json()
    passes = after["forward_passes"] - before["forward_passes"]
    acts = after["acts"] - before["acts"]
    ms = np.asarray(latencies) * 1000
    pct = lambda q: round(float(np.percentile(ms, q)), 2) if ms.size else None  # noqa: E731
    return {"url": config.url, "model": card.json()["name"], "clients": config.clients, "seconds": round(elapsed, 2),
            "encoding": config.encoding, "requests": len(latencies) + len(errors), "errors": len(errors),
            "throughput_rps": round(len(latencies) / elapsed, 1),
            "latency_ms": {"p50": pct(50), "p99": pct(99), "mean": round(float(ms.mean()), 2) if ms.size else None,
                           "max": round(float(ms.max()), 2) if ms.size else None},
            "server": {"forward_passes": passes, "mean_batch": round(acts / passes, 2) if passes else 0.0,
                       "max_batch_seen": after["max_batch_seen"]},
            "first_errors": errors[:3]}


def run(config: ServeLoadConfig) -> dict:
    result = asyncio.run(measure(config))
    text = json.dumps(result, indent=2)
    print(text)
    if config.out:
        Path(config.out).write_text(text + "\n")
    if result["errors"] and result["errors"] == result["requests"]:  # measured nothing: a failed run, not a figure
        first = (str(result["first_errors"][0]).strip().splitlines() or [""])[0][:200]
        print(f"wm serve-load: error: every one of {result['requests']} requests failed (first: {first}); check "
              f"the server's log, --token and that its model takes what --encoding sends", file=sys.stderr)
        return {**result, "exit_code": 1}
    return result
