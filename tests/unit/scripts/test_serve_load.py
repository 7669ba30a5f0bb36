"""`wm serve-load` against a fake server (httpx.MockTransport): a run in which every act failed exits 1 with one
line saying so (it used to print its JSON and exit 0); a run with some successful acts exits 0."""

from __future__ import annotations

import functools
import json

import httpx
import pytest

from scripts.cli import main

CARD = {"name": "fake", "obs_shape": [4, 4, 3], "obs_dtype": "uint8"}
STATS = {"forward_passes": 0, "acts": 0, "max_batch_seen": 0}


@pytest.fixture
def fake_server(monkeypatch):
    """Patch httpx.AsyncClient to talk to ``answers[path kind]``; returns that dict to fill."""
    acts = {"n": 0}
    answers = {"act": lambda n: httpx.Response(500, json={"error": "internal error RuntimeError: boom\nsecond line"})}

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/model":
            return httpx.Response(200, json=CARD)
        if path == "/v1/stats":
            return httpx.Response(200, json=STATS)
        if path == "/v1/sessions":
            return httpx.Response(200, json={"session_id": "s"})
        if path.endswith("/act"):
            acts["n"] += 1
            return answers["act"](acts["n"])
        return httpx.Response(200, json={"deleted": "s"})

    monkeypatch.setattr(httpx, "AsyncClient", functools.partial(httpx.AsyncClient,
                                                                transport=httpx.MockTransport(handler)))
    return answers


def test_every_request_failed_exits_1_with_one_line(fake_server, capsys):
    assert main(["serve-load", "--url", "http://fake", "--clients", "2", "--seconds", "0.2"]) == 1
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["requests"] > 0 and result["errors"] == result["requests"], result
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("wm serve-load: error: every one of") and "boom" in err[0], err


def test_some_successful_acts_exit_0(fake_server, capsys):
    fake_server["act"] = lambda n: (httpx.Response(200, json={"action": 0, "step": n}) if n % 2
                                    else httpx.Response(500, json={"error": "boom"}))
    assert main(["serve-load", "--url", "http://fake", "--clients", "2", "--seconds", "0.2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0 < result["errors"] < result["requests"], result
