"""`wm serve` against a real uvicorn server and a real HTTP client: auth, every bad input, concurrent batched
sessions, idle expiry, the loopback default and `--port 0`.

Servers run in a thread of this process over tiny saved models (16x16x3 frames), so each starts in well under
a second; one test runs the real `wm serve` command in a subprocess to check what it prints.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import subprocess
import sys
import threading
import time
import typing
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

import torch
import uvicorn

import worldmodels
from model_fixtures import CATCH, tiny_dreamer, tiny_worldmodels
from serving import serving
from scripts.cli import main
from scripts.serve import ServeConfig, check_host
from worldmodels.serving.sockets import is_loopback
from scripts.serve_load import ServeLoadConfig
from worldmodels.controllers.linear import make_controller
from worldmodels.envs import make
from worldmodels.envs.spaces import ActionSpec
from worldmodels.pretrained import save_worldmodels
from worldmodels.serving.app import decode_obs
from worldmodels.serving.sessions import ServeError

REPO = Path(__file__).resolve().parents[2]
SHAPE = (16, 16, 3)
FRAME = np.arange(np.prod(SHAPE), dtype=np.int64).reshape(SHAPE) % 256


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    tiny_worldmodels(root / "discrete")
    tiny_worldmodels(root / "box", ActionSpec("continuous", 2, (-1.0, 0.0), (1.0, 0.5)))
    tiny_dreamer(root / "dreamer")
    return root


def one_line_error(response: httpx.Response, status: int, *words: str) -> str:
    """The response is ``status`` with a JSON ``{"error": one line}`` naming ``words``, and no traceback."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    message = response.json()["error"]
    assert isinstance(message, str) and "\n" not in message and "Traceback" not in response.text, message
    for word in words:
        assert word in message, (word, message)
    return message


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_model_card_and_every_encoding_acts(models):
    with serving(models / "discrete") as url, httpx.Client(base_url=url) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        card = client.get("/v1/model").json()
        assert card["obs_shape"] == list(SHAPE) and card["family"] == "worldmodels"
        assert card["env_id"] == "worldmodels/Catch-v0" and card["action_space"] == {
            "type": "Discrete", "n": 3, "encoding": "an int in [0, n)"}
        session = client.post("/v1/sessions").json()["session_id"]
        act = f"/v1/sessions/{session}/act"
        bodies = [dict(json={"obs": FRAME.tolist()}),
                  dict(content=FRAME.astype(np.uint8).tobytes(), headers={"content-type": "application/octet-stream"}),
                  dict(content=png(FRAME), headers={"content-type": "image/png"})]
        for step, body in enumerate(bodies):
            reply = client.post(act, **body).json()
            assert reply["step"] == step and isinstance(reply["action"], int) and 0 <= reply["action"] < 3, reply
        assert client.delete(f"/v1/sessions/{session}").json() == {"deleted": session}
        one_line_error(client.post(act, json={"obs": FRAME.tolist()}), 404, session)


def test_box_actions_are_lists_in_bounds_and_dreamer_serves_too(models):
    with serving(models / "box") as url, httpx.Client(base_url=url) as client:
        assert client.get("/v1/model").json()["action_space"]["type"] == "Box"
        session = client.post("/v1/sessions").json()["session_id"]
        action = client.post(f"/v1/sessions/{session}/act", json={"obs": FRAME.tolist()}).json()["action"]
        assert isinstance(action, list) and len(action) == 2
        assert -1.0 <= action[0] <= 1.0 and 0.0 <= action[1] <= 0.5, action  # the env's Box: to_env clips
    with serving(models / "dreamer") as url, httpx.Client(base_url=url) as client:
        assert client.get("/v1/model").json()["family"] == "dreamer"
        session = client.post("/v1/sessions").json()["session_id"]
        for step in range(2):
            assert client.post(f"/v1/sessions/{session}/act", json={"obs": FRAME.tolist()}).json()["step"] == step


def test_every_bad_input_is_a_one_line_4xx(models):
    with serving(models / "discrete", max_sessions=2) as url, httpx.Client(base_url=url) as client:
        session = client.post("/v1/sessions").json()["session_id"]
        act = f"/v1/sessions/{session}/act"
        json_type = {"content-type": "application/json"}
        one_line_error(client.post(act, content=b'{"obs": [[1, 2', headers=json_type), 400, "malformed JSON", "16 x 16 x 3")
        one_line_error(client.post(act, content=b"\xff\xfe", headers=json_type), 400, "malformed JSON")
        one_line_error(client.post(act, json={"frame": []}), 422, '"obs"')
        one_line_error(client.post(act, json=[1, 2]), 422, '"obs"')
        one_line_error(client.post(act, json={"obs": FRAME[:8].tolist()}), 422, "(8, 16, 3)", "16 x 16 x 3")
        one_line_error(client.post(act, json={"obs": (FRAME / 2).tolist()}), 422, "floats", "ints 0..255")
        one_line_error(client.post(act, json={"obs": (FRAME + 300).tolist()}), 422, "300", "0..255")
        one_line_error(client.post(act, json={"obs": [[1, 2], [3]]}), 422, "ragged")
        one_line_error(client.post(act, json={"obs": "frame"}), 422, "strings")
        raw = {"content-type": "application/octet-stream"}
        one_line_error(client.post(act, content=b"\x00" * 100, headers=raw), 422, "100 bytes", "768")
        png_type = {"content-type": "image/png"}
        one_line_error(client.post(act, content=png(FRAME[:8, :8]), headers=png_type), 422, "8x8", "16x16 RGB PNG")
        one_line_error(client.post(act, content=png(FRAME[..., 0]), headers=png_type), 422, "mode L", "RGB")
        one_line_error(client.post(act, content=b"not a png", headers=png_type), 422, "not a readable PNG")
        one_line_error(client.post(act, content=b"x", headers={"content-type": "text/plain"}), 415, "text/plain",
                       "application/octet-stream")
        limit = client.get("/v1/model").json()["limits"]["max_body_bytes"]
        one_line_error(client.post(act, content=b"0" * (limit + 1), headers=raw), 413, str(limit))
        chunks = (b"0" * 4096 for _ in range(limit // 4096 + 2))  # no Content-Length: refused while streaming
        one_line_error(client.post(act, content=chunks, headers=raw), 413, str(limit))
        one_line_error(client.post("/v1/sessions/nope/act", json={"obs": FRAME.tolist()}), 404, "'nope'", "POST /v1/sessions")
        one_line_error(client.delete("/v1/sessions/nope"), 404, "'nope'")
        one_line_error(client.get("/v2/everything"), 404, "/v2/everything")
        one_line_error(client.put("/v1/model"), 405, "PUT")
        client.post("/v1/sessions")  # the second of two allowed
        one_line_error(client.post("/v1/sessions"), 429, "--max-sessions 2")
        assert client.post(act, json={"obs": FRAME.tolist()}).json()["step"] == 0  # the session survived it all


def png_declaring(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header declares ``width x height`` RGB pixels, with no pixel data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_hostile_bodies_are_4xx_not_500(models):
    """Each of these used to be a 500: Python's int-string limit (ValueError), json's RecursionError, and Pillow's
    decompression-bomb check firing before the size check."""
    with serving(models / "discrete") as url, httpx.Client(base_url=url) as client:
        act = f"/v1/sessions/{client.post('/v1/sessions').json()['session_id']}/act"
        json_type, png_type = {"content-type": "application/json"}, {"content-type": "image/png"}
        one_line_error(client.post(act, content=b'{"obs": [' + b"9" * 5000 + b"]}", headers=json_type), 400,
                       "digits", "16 x 16 x 3")
        deep = b'{"obs": ' + b"[" * 5000 + b"]" * 5000 + b"}"  # under this model's body limit (10,240 bytes)
        one_line_error(client.post(act, content=deep, headers=json_type), 400, "nested", "16 x 16 x 3")
        for width, height in ((20_000, 20_000), (10_000, 10_000)):  # past Pillow's error limit, and its warning one
            bomb = png_declaring(width, height)
            assert len(bomb) < 100
            one_line_error(client.post(act, content=bomb, headers=png_type), 422, f"{width}x{height}", "16x16 RGB PNG")
        bmp = b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, 20_000, 20_000, 1, 24,
                                                                        0, 0, 0, 0, 0, 0)  # another format's bomb
        one_line_error(client.post(act, content=bmp, headers=png_type), 422, "pixels", "16x16 RGB PNG")
        assert client.post(act, json={"obs": FRAME.tolist()}).json()["step"] == 0  # the session is fine
    # 30,000 deep fits the body limit of a 64x64x3 model (102,400 bytes), as the shipped ones are
    with pytest.raises(ServeError) as info:
        decode_obs(b'{"obs": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", "application/json", (64, 64, 3))
    assert info.value.status == 400 and "nested" in info.value.message


def test_bearer_token_guards_everything_but_healthz(models):
    with serving(models / "discrete", token="s3cret") as url, httpx.Client(base_url=url) as client:
        assert client.get("/healthz").status_code == 200  # probes need no secret
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic s3cret"}):
            for method, path in (("GET", "/v1/model"), ("POST", "/v1/sessions"), ("GET", "/v1/stats"),
                                 ("POST", "/v1/sessions/x/act"), ("DELETE", "/v1/sessions/x")):
                response = client.request(method, path, headers=headers)
                one_line_error(response, 401, "Authorization: Bearer")
                assert response.headers["www-authenticate"] == "Bearer"
        good = {"authorization": "Bearer s3cret"}
        assert client.get("/v1/model", headers=good).status_code == 200
        session = client.post("/v1/sessions", headers=good).json()["session_id"]
        assert client.post(f"/v1/sessions/{session}/act", json={"obs": FRAME.tolist()}, headers=good).status_code == 200


def test_eight_concurrent_sessions_share_forward_passes(models):
    clients, steps = 8, 6
    start = threading.Barrier(clients)
    replies: dict[int, list] = {}

    def play(url: str, k: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            session = client.post("/v1/sessions").json()["session_id"]
            start.wait(30)
            replies[k] = [client.post(f"/v1/sessions/{session}/act", json={"obs": FRAME.tolist()}).json()
                          for _ in range(steps)]

    # A 50 ms window: 8 clients released together land in it even on a busy 2-core machine.
    with serving(models / "discrete", max_wait_ms=50.0, max_batch=8) as url:
        threads = [threading.Thread(target=play, args=(url, k)) for k in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        stats = httpx.get(f"{url}/v1/stats").json()
    assert sorted(replies) == list(range(clients))
    for k, rows in replies.items():
        assert [row["step"] for row in rows] == list(range(steps)), (k, rows)  # each session kept its own count
        assert all(isinstance(row["action"], int) for row in rows)
    assert stats["acts"] == clients * steps and stats["max_batch_seen"] > 1, stats  # batched: one pass, several sessions
    assert stats["forward_passes"] < clients * steps, stats


def test_idle_sessions_expire(models):
    with serving(models / "discrete", idle_timeout_s=0.5) as url, httpx.Client(base_url=url) as client:
        idle = client.post("/v1/sessions").json()["session_id"]
        time.sleep(0.8)  # > 0.5 s idle timeout
        one_line_error(client.post(f"/v1/sessions/{idle}/act", json={"obs": FRAME.tolist()}), 404, "idle")
        assert client.get("/v1/stats").json()["expired"] == 1


def test_loopback_by_default_and_exposed_hosts_need_a_token(models, monkeypatch, capsys):
    assert ServeConfig().host == "127.0.0.1"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")
    check_host("0.0.0.0", "a-token")  # allowed with a token
    monkeypatch.delenv("WM_SERVE_TOKEN", raising=False)
    assert main(["serve", "--checkpoint", str(models / "discrete"), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--host 0.0.0.0" in err[0] and "--token" in err[0], err


@pytest.mark.parametrize("command, config", [("serve", ServeConfig), ("serve-load", ServeLoadConfig)])
def test_every_numeric_flag_has_a_finite_maximum(command, config, capsys):
    """`wm serve --max-wait-ms inf` killed the batcher on the first act, and `1e12` never answered an act."""
    hints = typing.get_type_hints(config)
    numeric = [f for f in dataclasses.fields(config) if hints[f.name] in (int, float)]
    assert numeric and all(f.metadata.get("maximum") is not None for f in numeric), \
        [f.name for f in numeric if f.metadata.get("maximum") is None]
    for field in numeric:
        huge = "1e12" if hints[field.name] is float else str(10**12)
        flag = "--" + field.name.replace("_", "-")
        # refused by the range check, before the (missing) checkpoint is read or the (absent) server is called
        assert main([command, f"{flag}={huge}", "--checkpoint" if command == "serve" else "--url",
                     "/nonexistent" if command == "serve" else "http://127.0.0.1:9"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{flag} must be a number <=" in err[0], err


@pytest.mark.parametrize("token, why", [("pässword", "non-ASCII"), ("two words", "whitespace"),
                                        ("tab\there", "whitespace"), ("bell\x07", "control")])
def test_a_token_an_http_header_cannot_carry_is_refused_in_one_line(models, monkeypatch, capsys, token, why):
    """HTTP headers are latin-1: a UTF-8 client could never send a non-ASCII token, so the server was unusable."""
    monkeypatch.delenv("WM_SERVE_TOKEN", raising=False)
    # refused before serving: a server that starts here would serve until killed
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: pytest.fail("served with that token"))
    checkpoint = str(models / "discrete")
    for argv, source in ((["serve", "--checkpoint", checkpoint, "--token", token], "--token"),
                         (["serve-load", "--url", "http://127.0.0.1:9", "--token", token], "--token")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and source in err[0] and why in err[0] and "printable ASCII" in err[0], err
        assert token not in err[0], err  # the secret is not echoed
    monkeypatch.setenv("WM_SERVE_TOKEN", token)
    for argv in (["serve", "--checkpoint", checkpoint], ["serve-load", "--url", "http://127.0.0.1:9"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "$WM_SERVE_TOKEN" in err[0] and why in err[0], err


def test_wm_serve_port_0_prints_the_url_it_bound(models):
    env = {**os.environ, "WM_SERVE_TOKEN": "from-env"}
    process = subprocess.Popen([sys.executable, "-m", "scripts.cli", "serve", "--checkpoint", str(models / "discrete"),
                                "--port", "0"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        line = process.stdout.readline()
        assert "http://127.0.0.1:" in line and "bearer token required" in line, line
        url = line.split(" on ")[1].split()[0]
        assert int(url.rsplit(":", 1)[1]) > 0  # a real port, not 0
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"{url}/v1/model", timeout=10).status_code == 401  # WM_SERVE_TOKEN was picked up
        assert httpx.get(f"{url}/v1/model", headers={"authorization": "Bearer from-env"}, timeout=10).status_code == 200
    finally:
        process.terminate()
        process.wait(20)


def test_in_process_api_from_any_directory_carries_the_env_settings(tmp_path, monkeypatch):
    """`worldmodels.load(...).policy()` is the server's policy in-process; the README serving section's loop, on Catch."""
    vae, mdnrnn, params = tiny_worldmodels(tmp_path / "plain")
    save_worldmodels(tmp_path / "catch", vae, mdnrnn, make_controller("linear", 4 + 8, CATCH), params,
                     env_id="worldmodels/Catch-v0", action_spec=CATCH, env_options={"frameskip": 2, "max_episode_steps": 3})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # shipped names resolve next to the package, not from the working directory
    shipped = worldmodels.load("pong-worldmodels-tiny")
    assert shipped.env_id == "ALE/Pong-v5" and shipped.env_options["image_size"] == 64

    model = worldmodels.load(tmp_path / "catch")
    assert model.env_options == {"image_size": 16, "frameskip": 2, "max_episode_steps": 3}
    policy, env = model.policy(), make(model.env_id, seed=0, **model.env_options)
    obs, _ = env.reset()
    state, first, done, steps = None, True, False, 0
    while not done:
        action, state = policy.act(torch.as_tensor(obs)[None], torch.tensor([first]), state)
        obs, _, terminated, truncated, _ = env.step(model.action_spec.to_env(action)[0])
        first, done, steps = False, terminated or truncated, steps + 1
    # Catch's ball lands after 9 env steps; the saved frameskip 2 and 3-step cap end the episode first.
    assert steps == 3 and truncated and not terminated
