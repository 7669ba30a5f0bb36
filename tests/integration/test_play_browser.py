"""`wm play` driven in a real browser (Playwright over the system Chromium), and the API its page talks to.

The browser test runs the real `wm play` command on the shipped pong-dreamer-tiny, loads the page in headless
Chromium, holds arrow keys and space, then checks that the server logged exactly those actions as the user's,
that the policy toggle hands the actions to the model's policy, and that the canvases hold frames that change.
Its screenshot goes to pytest's tmp dir and, with WM_PLAY_SCREENSHOT=PATH, to PATH too. Chromium is the Debian
package (`apt-get install chromium`); Playwright never downloads a browser here. Without it the test skips,
unless WM_REQUIRE_BROWSER=1 (CI), where it fails.

The API tests run without a browser on tiny World Models models (with C, and without C: random actions).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from model_fixtures import tiny_worldmodels
from scripts.cli import main
from worldmodels.envs import make
from worldmodels.registry import load
from worldmodels.serving.play import PlaySettings, action_controls, action_meanings, create_play_app

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT = "pong-dreamer-tiny"  # Pong's meanings: 0 NOOP, 1 FIRE, 2 RIGHT, 3 LEFT, 4 RIGHTFIRE, 5 LEFTFIRE
STEP_WAIT_MS = 60_000  # how long a wait for the page's next steps may take before the test fails (a hang, not speed)


def chromium_or_skip() -> str:
    """The Chromium binary and an importable Playwright, else a skip (a failure with WM_REQUIRE_BROWSER=1)."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401 - only this test needs it
    except ImportError:
        missing.append("the Python package playwright (pip install playwright)")
    binary = os.environ.get("WM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not binary:
        missing.append("a chromium binary on PATH (apt-get install -y chromium; or WM_CHROMIUM=PATH)")
    if missing:
        reason = "wm play browser test needs " + " and ".join(missing)
        if os.environ.get("WM_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " (WM_REQUIRE_BROWSER=1)")
        pytest.skip(reason)
    return binary


def start_wm_play(*flags: str) -> tuple[subprocess.Popen, str]:
    """The real `wm play` command on a free port -> (process, the page URL it printed)."""
    process = subprocess.Popen([sys.executable, "-m", "scripts.cli", "play", *flags], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in process.stdout:  # the ALE prints its banner first
        seen.append(line)
        if line.startswith("wm play:"):
            return process, line.split(" at ")[1].split()[0]
    process.wait(10)
    raise AssertionError(f"wm play exited with {process.returncode} before printing its URL: {''.join(seen)}")


def canvas_pixels(page, canvas_id: str) -> np.ndarray:
    """The canvas's RGBA pixels ``(H, W, 4)`` uint8, read in the page with getImageData."""
    width, height, data = page.evaluate("""(id) => {
        const c = document.getElementById(id);
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let s = ""; for (let i = 0; i < d.length; i += 8192) s += String.fromCharCode(...d.subarray(i, i + 8192));
        return [c.width, c.height, btoa(s)];
    }""", canvas_id)
    return np.frombuffer(base64.b64decode(data), np.uint8).reshape(height, width, 4)


def wait_steps(page, steps: int) -> None:
    """Wait until the page has taken ``steps`` more steps chosen after now: the one in flight does not count."""
    start = page.evaluate("wmPlay.steps")
    page.wait_for_function(f"wmPlay.steps >= {start + steps + 1}", timeout=STEP_WAIT_MS)


def hold(page, key: str, steps: int) -> None:
    """Hold ``key`` for ``steps`` steps (at least)."""
    page.keyboard.down(key)
    wait_steps(page, steps)
    page.keyboard.up(key)


def test_the_page_plays_keys_and_policy_in_a_real_browser(tmp_path, capsys):
    binary = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    process, url = start_wm_play("--checkpoint", CHECKPOINT, "--port", "0")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=binary, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url)
            page.wait_for_function("window.wmPlay && wmPlay.steps >= 2", timeout=STEP_WAIT_MS)
            assert page.evaluate("wmPlay.info.fps") == 15.0  # ALE at frameskip 4: 60 / 4 frames a second
            first = canvas_pixels(page, "dream")
            assert first.shape == (384, 384, 4)  # 64 x 64 upscaled 6x
            hold(page, "ArrowRight", 3)
            hold(page, "ArrowLeft", 3)
            hold(page, "Space", 3)
            page.keyboard.press("t")  # policy drives
            wait_steps(page, 4)
            page.keyboard.press("p")  # pause: the log below is complete
            page.wait_for_function("!wmPlay.running", timeout=STEP_WAIT_MS)
            session, shown = page.evaluate("[wmPlay.session, document.getElementById('dream-end').textContent]")
            dream, real = canvas_pixels(page, "dream"), canvas_pixels(page, "real")
            page.screenshot(path=str(tmp_path / "play.png"))
            if os.environ.get("WM_PLAY_SCREENSHOT"):
                page.screenshot(path=os.environ["WM_PLAY_SCREENSHOT"])
            browser.close()
        with urllib.request.urlopen(f"{url}play/log?session={session}", timeout=30) as response:
            log = json.load(response)["actions"]
    finally:
        process.terminate()
        process.wait(20)
    assert not errors, errors
    user = [entry["action"] for entry in log if entry["source"] == "user"]
    policy = [entry for entry in log if entry["source"] == "policy"]
    # Held keys reach the server as Pong's actions, in order: RIGHT (2), LEFT (3), FIRE (1); NOOP (0) between.
    pressed = [action for i, action in enumerate(user) if action != 0 and (i == 0 or user[i - 1] != action)]
    assert pressed == [2, 3, 1], user
    assert user.count(2) >= 3 and user.count(3) >= 3 and user.count(1) >= 3, user
    assert len(policy) >= 4 and log[-1]["source"] == "policy", log[-6:]
    assert 0.0 <= float(shown) <= 1.0  # the termination probability is shown as a number
    for pixels in (dream, real):
        assert pixels[..., 3].min() == 255 and pixels[..., :3].std() > 1.0  # painted frames, not a blank canvas
    assert np.abs(dream.astype(int) - first.astype(int)).sum() > 0  # the dream moved on under the actions
    with capsys.disabled():  # one line in every log, CI's included (pytest -q shows no test names)
        print(f"\nbrowser test: {binary} drove wm play on {CHECKPOINT}: keys -> actions {pressed}, "
              f"{len(policy)} policy steps, canvases painted and moving; screenshot {tmp_path / 'play.png'}")


@pytest.fixture
def app_client(tmp_path):
    def client(controller: bool = True, **settings) -> TestClient:
        tiny_worldmodels(tmp_path / f"wm-{controller}", controller=controller)
        app = create_play_app(load(tmp_path / f"wm-{controller}"), settings=PlaySettings(**settings), name="tiny")
        return TestClient(app)
    return client


def test_api_steps_the_dream_and_the_real_env_with_one_action(app_client):
    with app_client(max_sessions=2, seed=7) as client:
        info = client.get("/play/info").json()
        assert info["family"] == "worldmodels" and info["policy"] == "ControllerHead" and len(info["actions"]) == 3
        assert info["fps"] == 10.0  # Catch's render_fps, at frameskip 1
        first = client.post("/play/reset", json={}).json()
        session = first["session"]
        assert first["seed"] == 7 and first["step"] == 0 and first["source"] == "reset"
        frame = np.frombuffer(base64.b64decode(first["dream"]["frame"]), np.uint8)
        assert frame.size == 16 * 16 * 3 and len(base64.b64decode(first["real"]["frame"])) == 16 * 16 * 3
        steps = [client.post("/play/step", json={"session": session, "action": a}).json() for a in (2, "policy", 0)]
        assert [s["step"] for s in steps] == [1, 2, 3] and steps[0]["action"] == 2
        assert [s["source"] for s in steps] == ["user", "policy", "user"]
        for step in steps:
            assert 0.0 <= step["dream"]["end_prob"] <= 1.0 and np.isfinite(step["dream"]["reward"])
        log = client.get("/play/log", params={"session": session}).json()
        assert [(e["action"], e["source"]) for e in log["actions"]] == [(2, "user"), (steps[1]["action"], "policy"),
                                                                         (0, "user")]
        # Catch drops its ball for 9 steps; then the real panel holds its last frame while the dream goes on.
        steps += [client.post("/play/step", json={"session": session, "action": 1}).json() for _ in range(7)]
        assert [s["real"]["done"] for s in steps] == [False] * 8 + [True, True]
        assert steps[8]["real"]["terminated"] and abs(steps[8]["real"]["reward"]) == 1.0  # caught (+1) or missed (-1)
        assert steps[9]["real"]["frame"] is None and steps[9]["dream"]["frame"] and steps[9]["step"] == 10
        again = client.post("/play/reset", json={"session": session}).json()
        assert again["session"] == session and again["seed"] == 8 and again["step"] == 0  # the next seed
        assert client.get("/play/log", params={"session": session}).json()["actions"] == []


def test_api_refuses_bad_input_in_one_line_and_limits_sessions(app_client):
    with app_client(controller=False, max_sessions=2) as client:
        assert client.get("/play/info").json()["policy"] == "RandomPolicy"  # no C: random actions
        ids = [client.post("/play/reset", json={}).json()["session"] for _ in range(3)]
        pool = client.app.state.pool
        assert list(pool.sessions) == ids[1:]  # the third page took the least recently used slot
        cases = [({"session": ids[0], "action": 1}, 404, "press reset"),
                 ({"session": ids[1], "action": 3}, 422, "[0, 3)"),
                 ({"session": ids[1], "action": True}, 422, "[0, 3)"),
                 ({"session": ids[1]}, 422, "'action'")]
        for body, status, words in cases:
            response = client.post("/play/step", json=body)
            assert response.status_code == status and words in response.json()["error"], response.text
            assert "\n" not in response.json()["error"]
        assert client.post("/play/step", content=b"{not json").status_code == 400
        assert client.post("/play/reset", json={"seed": -1}).status_code == 422
        assert client.get("/play/log").status_code == 422
        assert client.post("/play/close", json={"session": ids[1]}).json() == {"closed": True}
        assert list(pool.sessions) == ids[2:]
        assert client.get("/nowhere").json()["error"].startswith("no endpoint GET /nowhere")


def test_keys_follow_the_env_action_names():
    assert action_controls("UPRIGHTFIRE") == ["UP", "RIGHT", "FIRE"]
    assert action_controls("NOOP") == [] and action_controls("MOVE_LEFT") == ["LEFT"]
    assert action_controls("ATTACK") == ["FIRE"] and action_controls("MOVE_FORWARD+TURN_RIGHT") == ["UP", "RIGHT"]
    env = make("ALE/Pong-v5")
    try:
        assert action_meanings(env, 6) == ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
    finally:
        env.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "example.com", "192.168.1.2"])
def test_only_loopback_hosts_are_served(host, capsys):
    assert main(["play", "--host", host]) == 2  # refused before any model is loaded
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--host {host}" in err[0] and "loopback" in err[0], err


def test_box_actions_are_clipped_and_the_policy_drives_carracing():
    with TestClient(create_play_app(load("carracing-worldmodels-tiny"))) as client:
        info = client.get("/play/info").json()
        assert not info["discrete"] and info["actions"] == [] and info["fps"] == 50.0  # CarRacing's render_fps
        session = client.post("/play/reset", json={}).json()["session"]
        step = client.post("/play/step", json={"session": session, "action": [5, 0.5, -1]}).json()
        assert step["action"] == [1.0, 0.5, 0.0]  # clipped to the Box [-1, 1] x [0, 1] x [0, 1]
        step = client.post("/play/step", json={"session": session, "action": "policy"}).json()
        assert step["source"] == "policy" and len(step["action"]) == 3 and step["real"]["frame"]
        for bad in ([1, 2], [10**400, 0, 0], 3, ["a", 0, 0]):
            response = client.post("/play/step", json={"session": session, "action": bad})
            assert response.status_code == 422 and "not a Box action" in response.json()["error"], response.text
            assert len(response.json()["error"]) < 160
