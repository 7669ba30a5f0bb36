"""``wm serve`` over a vector-observation Dreamer: ``{"obs": [D floats]}`` (or 4*D float32 bytes) acts; bad vectors
are one-line 4xx errors. A real uvicorn server on a free loopback port in a thread, and a real HTTP client."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import torch

from scripts.cli import main
from serving import serving
from worldmodels.envs.spaces import ActionSpec
from worldmodels.pretrained import build, save_dreamer

D = 4
AGENT = {"deter": 16, "hidden": 16, "stoch": 4, "classes": 4, "depth": 4, "stages": 2, "layers": 1, "num_bins": 15}
OBS = [0.01, -0.2, 0.03, 1.5]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    torch.manual_seed(0)
    spec = ActionSpec("discrete", 2)
    root = tmp_path_factory.mktemp("serve-vector") / "cartpole"
    parts = build({"family": "dreamer", "obs_shape": [D], "action_spec": spec.to_dict(), "config": AGENT})
    save_dreamer(root, parts, agent_config=AGENT, env_id="CartPole-v1")  # a vector model saves obs "vector" itself
    with serving(root) as url, httpx.Client(base_url=url) as http:
        yield http


@pytest.mark.parametrize("encoding", ["bytes", "json"])
def test_serve_load_sends_float32_vectors(client, capsys, encoding):
    """It sent D uint8 bytes (or ints) to a vector model, so every act was a 422."""
    argv = ["serve-load", "--url", str(client.base_url).rstrip("/"), "--clients", "2", "--seconds", "0.3",
            "--encoding", encoding]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["requests"] > 0 and result["errors"] == 0, result
    assert main(argv[:-1] + ["png"]) == 2  # PNG carries images only
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--encoding png" in err[0] and "bytes or json" in err[0], err


def error(response, status: int, *words: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    message = response.json()["error"]
    assert "\n" not in message and all(word in message for word in words), message


def test_vector_model_card_and_both_encodings_act(client):
    card = client.get("/v1/model").json()
    assert card["obs_shape"] == [D] and card["obs_dtype"] == "float32" and card["env_options"] == {"obs": "vector"}
    session = client.post("/v1/sessions").json()["session_id"]
    act = f"/v1/sessions/{session}/act"
    first = client.post(act, json={"obs": OBS}).json()
    raw = client.post(act, content=np.asarray(OBS, "<f4").tobytes(),
                      headers={"content-type": "application/octet-stream"}).json()
    assert [first["step"], raw["step"]] == [0, 1] and all(r["action"] in (0, 1) for r in (first, raw))
    assert client.post(act, json={"obs": [0, 1, 2, 3]}).json()["step"] == 2  # ints are numbers too


def test_bad_vectors_are_one_line_4xx(client):
    act = f"/v1/sessions/{client.post('/v1/sessions').json()['session_id']}/act"
    error(client.post(act, json={"obs": OBS[:3]}), 422, "shape (3,)", "a list of 4 finite numbers")
    error(client.post(act, json={"obs": [OBS]}), 422, "shape (1, 4)")
    error(client.post(act, content=b'{"obs": [1, NaN, 0, 0]}', headers={"content-type": "application/json"}),
          422, "NaN or inf at index 1")
    error(client.post(act, json={"obs": [1e300, 0, 0, 0]}), 422, "NaN or inf at index 0")  # past float32's range
    error(client.post(act, json={"obs": ["a", "b", "c", "d"]}), 422, "strings")
    error(client.post(act, content=b'{"obs": [1, 2', headers={"content-type": "application/json"}), 400, "malformed JSON")
    error(client.post(act, content=b"\x00" * 12, headers={"content-type": "application/octet-stream"}),
          422, "12 bytes", "16 bytes of little-endian float32")
    error(client.post(act, content=b"x", headers={"content-type": "image/png"}), 415, "vector observations")
    deep = b'{"obs": ' + b"[" * 2000 + b"]" * 2000 + b"}"  # under the body limit, past json's recursion limit
    error(client.post(act, content=deep, headers={"content-type": "application/json"}), 400, "nested")  # was a 500
