"""The HTTP API of ``wm serve``: a FastAPI app over one loaded model's policy and a :class:`SessionPool`.

::

    GET    /healthz                  {"status": "ok"}                           (never needs the token)
    GET    /v1/model                 the model card: family, env, obs_shape, action space, limits
    GET    /v1/stats                 sessions open, forward passes, acts, batch sizes seen
    POST   /v1/sessions              {"session_id"}
    POST   /v1/sessions/{id}/act     one observation -> {"action", "step"}
    DELETE /v1/sessions/{id}         {"deleted": id}

An observation is ``H x W x C`` uint8, sent as ``application/json`` ``{"obs": nested lists}``, as
``application/octet-stream`` (exactly ``H*W*C`` bytes, row-major), or as ``image/png``; a model of vector
observations takes ``D`` finite floats, as ``{"obs": [D floats]}`` or ``4*D`` bytes of little-endian float32.
The action comes back
in the env's encoding (:meth:`ActionSpec.to_env`, what the driver executes): an int for Discrete, a list of
floats for Box. ``step`` is the 0-based index of the observation within its session.

Every failure is a JSON ``{"error": one line}`` with a 4xx status (5xx only for a fault of the server, still
one line, never a traceback). With a ``token``, every endpoint but ``/healthz`` needs ``Authorization: Bearer``.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import json
import struct
import sys
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from worldmodels.registry import Pretrained
from worldmodels.serving.sessions import ServeError, SessionPool, SessionSettings
from worldmodels.version import __version__

JSON_BYTES_PER_VALUE = 8  # "255, " plus brackets and whitespace, with room for pretty-printed JSON
JSON_BYTES_PER_FLOAT = 32  # the longest float repr ("-1.2345678901234567e-300", 24) plus ", " and room
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def create_app(model: Pretrained, *, settings: SessionSettings = SessionSettings(), token: str = "",
               name: str = "", sample: bool = False, seed: int | None = None) -> FastAPI:
    """The app serving ``model.policy(sample=, seed=)``; its pool is ``app.state.pool`` (closed at shutdown)."""
    obs_shape = tuple(int(n) for n in model.obs_shape)  # (H, W, C) frames or (D,) vectors
    size = int(np.prod(obs_shape))
    per_value = JSON_BYTES_PER_FLOAT if len(obs_shape) == 1 else JSON_BYTES_PER_VALUE
    limit = per_value * size + 4096  # the largest body any encoding of one observation needs
    pool = SessionPool(model.policy(sample=sample, seed=seed), settings)
    card = model_card(model, name=name, settings=settings, max_body_bytes=limit)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        pool.close()

    app = FastAPI(title="worldmodels policy server", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.pool = pool
    _install_error_handlers(app)

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if token and request.url.path != "/healthz":
            header = request.headers.get("authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
                why = "no Authorization header" if not header else "a wrong or malformed Authorization header"
                return JSONResponse({"error": f"{why}; send 'Authorization: Bearer <token>' with the server's --token"},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/v1/model")
    async def get_model() -> dict:
        return card

    @app.get("/v1/stats")
    async def get_stats() -> dict:
        return pool.stats()

    @app.post("/v1/sessions")
    async def create_session() -> dict:
        return {"session_id": pool.create().id}

    @app.post("/v1/sessions/{session_id}/act")
    async def act(session_id: str, request: Request) -> dict:
        pool.get(session_id)  # an unknown session is a 404 before its body is even read
        body = await read_body(request, limit)
        obs = decode_obs(body, request.headers.get("content-type", ""), obs_shape)
        action, step = await asyncio.wrap_future(pool.submit(session_id, obs))
        return {"action": action, "step": step}

    @app.delete("/v1/sessions/{session_id}")
    async def delete_session(session_id: str) -> dict:
        pool.delete(session_id)
        return {"deleted": session_id}

    return app


def model_card(model: Pretrained, *, name: str, settings: SessionSettings, max_body_bytes: int) -> dict[str, Any]:
    """What a client needs to talk to the server: the model, its env, and the shapes and limits of a request."""
    spec = model.action_spec
    if spec.discrete:
        space = {"type": "Discrete", "n": spec.dim, "encoding": "an int in [0, n)"}
    else:
        space = {"type": "Box", "shape": [spec.dim], "low": list(spec.low), "high": list(spec.high),
                 "encoding": "a list of floats, clipped to [low, high]"}
    return {"name": name or (model.path.name if model.path else ""), "family": model.family, "env_id": model.env_id,
            "env_options": model.env_options, "obs_shape": list(model.obs_shape),
            "obs_dtype": "float32" if len(model.obs_shape) == 1 else "uint8",
            "action_space": space, "training_steps": model.config.get("training_steps", {}),
            "metrics": model.config.get("metrics", {}), "library_version": __version__,
            "limits": {"max_sessions": settings.max_sessions, "idle_timeout_s": settings.idle_timeout_s,
                       "max_batch": settings.max_batch, "max_wait_ms": settings.max_wait_ms,
                       "max_body_bytes": max_body_bytes}}


# ---------------------------------------------------------------------------------------------- requests


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (declared or streamed)."""
    too_big = ServeError(413, f"request body over {limit} bytes, the most one observation needs; send one "
                              f"observation per act request")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
    except ClientDisconnect:  # the client went away mid-body: nobody reads the answer, and it is no server fault
        raise ServeError(400, "the client disconnected before sending the whole body") from None
    return b"".join(chunks)


def decode_obs(body: bytes, content_type: str, shape: tuple[int, ...]) -> np.ndarray:
    """A request body -> one observation ``(H, W, C)`` uint8 or ``(D,)`` float32, or a :class:`ServeError` naming
    what was wrong."""
    media = content_type.split(";")[0].strip().lower()
    if len(shape) == 1:
        return _decode_vector(body, media, shape[0])
    H, W, C = shape
    if media == "application/octet-stream":
        if len(body) != H * W * C:
            raise ServeError(422, f"body has {len(body)} bytes; expected exactly H*W*C = {H}*{W}*{C} = {H * W * C} "
                                  f"raw uint8 bytes (row-major H x W x C)")
        return np.frombuffer(body, np.uint8).reshape(shape).copy()  # writable: torch.from_numpy wants it
    if media == "image/png":
        return _decode_png(body, shape)
    if media in ("application/json", ""):
        return _decode_json(body, shape)
    raise ServeError(415, f"Content-Type {media!r} is not accepted; send application/json {{\"obs\": {H}x{W}x{C} "
                          f"nested lists}}, application/octet-stream ({H * W * C} bytes) or image/png")


def _json_obs(body: bytes, expected: str) -> np.ndarray:
    """The ``"obs"`` field of a JSON body as an array; 400 for malformed JSON, 422 for a missing or ragged field."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        where = f" at line {error.lineno} column {error.colno}" if isinstance(error, json.JSONDecodeError) else ""
        raise ServeError(400, f"malformed JSON body{where}; {expected}") from None
    except ValueError:  # Python's int-string conversion limit (sys.get_int_max_str_digits())
        raise ServeError(400, f"JSON body holds an integer of more than {sys.get_int_max_str_digits()} digits; "
                              f"{expected}") from None
    except RecursionError:
        raise ServeError(400, f"JSON body is nested too deep to parse; {expected}") from None
    if not isinstance(payload, dict) or "obs" not in payload:
        raise ServeError(422, f"JSON body has no \"obs\" field; {expected}")
    try:
        return np.asarray(payload["obs"])
    except ValueError:  # ragged nesting
        raise ServeError(422, f"obs is a ragged nested list; {expected}") from None


def _decode_vector(body: bytes, media: str, dim: int) -> np.ndarray:
    """``{"obs": [dim floats]}`` or ``4 * dim`` bytes of little-endian float32 -> ``(dim,)`` float32, finite."""
    expected = f"expected {{\"obs\": a list of {dim} finite numbers}} or {4 * dim} bytes of little-endian float32"
    if media == "application/octet-stream":
        if len(body) != 4 * dim:
            raise ServeError(422, f"body has {len(body)} bytes; {expected}")
        obs = np.frombuffer(body, "<f4").astype(np.float32)  # a writable native copy: torch.from_numpy wants it
    elif media in ("application/json", ""):
        obs = _json_obs(body, expected)
        if obs.dtype.kind not in "iuf":
            kind = {"b": "booleans", "U": "strings"}.get(obs.dtype.kind, "values that are not numbers")
            raise ServeError(422, f"obs holds {kind} (dtype {obs.dtype}) with shape {obs.shape}; {expected}")
        if obs.shape != (dim,):
            raise ServeError(422, f"obs has shape {obs.shape}; {expected}")
        with np.errstate(over="ignore"):  # past float32's range is inf, refused below
            obs = obs.astype(np.float32)
    else:
        raise ServeError(415, f"Content-Type {media!r} is not accepted for vector observations; {expected}")
    if not np.isfinite(obs).all():
        raise ServeError(422, f"obs holds NaN or inf at index {int(np.argwhere(~np.isfinite(obs))[0][0])}; {expected}")
    return obs


def _decode_json(body: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    expected = f"expected {{\"obs\": {shape[0]} x {shape[1]} x {shape[2]} nested lists of ints 0..255}}"
    obs = _json_obs(body, expected)
    if obs.dtype.kind not in "iu":
        kind = {"f": "floats", "b": "booleans", "U": "strings"}.get(obs.dtype.kind, "values that are not numbers")
        raise ServeError(422, f"obs holds {kind} (dtype {obs.dtype}) with shape {obs.shape}; {expected} (uint8)")
    return _checked(obs, shape, expected)


def _decode_png(body: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError  # deferred: only PNG requests need Pillow

    H, W, C = shape
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(C)
    expected = f"expected a {W}x{H} {mode or f'{C}-channel'} PNG (uint8)"
    # The size the IHDR chunk declares, read before Pillow: its decompression-bomb check raises inside
    # Image.open for a 74-byte PNG declaring 20000x20000, before the size check below could refuse it.
    if body[:8] == PNG_SIGNATURE and body[12:16] == b"IHDR" and len(body) >= 24:
        declared = struct.unpack(">II", body[16:24])
        if declared != (W, H):
            raise ServeError(422, f"got a {declared[0]}x{declared[1]} PNG; {expected}")
    try:
        image = Image.open(io.BytesIO(body))  # header only: mode and size are checked before pixels are decoded
        if image.format != "PNG" or image.mode != mode or image.size != (W, H):
            raise ServeError(422, f"got a {image.size[0]}x{image.size[1]} {image.format} image in mode {image.mode}; "
                                  f"{expected}")
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:  # another format's header
        # (the warning is raised only where warnings are errors; else the format check above refuses it)
        raise ServeError(422, f"body declares more pixels than an image should ({error}); {expected}") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ServeError(422, f"body is not a readable PNG ({type(error).__name__}); {expected}") from None
    return _checked(np.asarray(image).reshape(shape), shape, expected)


def _checked(obs: np.ndarray, shape: tuple[int, int, int], expected: str) -> np.ndarray:
    if obs.shape != shape:
        raise ServeError(422, f"obs has shape {obs.shape}; {expected}")
    if obs.size and (obs.min() < 0 or obs.max() > 255):
        raise ServeError(422, f"obs values span {obs.min()}..{obs.max()}; {expected}")
    return obs.astype(np.uint8)


# ---------------------------------------------------------------------------------------------- errors


def _install_error_handlers(app: FastAPI) -> None:
    """Every error becomes ``{"error": one line}``: ours, FastAPI's (404 route, 405 method) and any other."""

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, error: ServeError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = {404: f"no endpoint {request.method} {request.url.path}; see GET /v1/model and the serving docs",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(error.status_code, str(error.detail))
        return JSONResponse({"error": message}, status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return JSONResponse({"error": f"invalid request at {where or 'request'}: {first.get('msg', 'invalid')}"},
                            status_code=422)

    @app.exception_handler(Exception)
    async def server_fault(request: Request, error: Exception) -> JSONResponse:
        # A bug, not bad input: one line for the client; uvicorn's log keeps the traceback for the operator.
        line = (str(error).strip().splitlines() or [""])[0]
        return JSONResponse({"error": f"internal error {type(error).__name__}: {line}"}, status_code=500)
