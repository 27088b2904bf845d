"""Label Studio's ML-backend protocol over HTTP: Starlette routes onto :class:`.backend.Backend`, run by uvicorn.

Routes, as Label Studio 1.23 calls them (``label_studio/ml/api_connector.py``):

=================  ==========================================================================================
``GET /health``    ``{"status": "UP", ...}`` (Label Studio allows it one second)
``POST /setup``    ``{"model_version": ...}``; the project's labeling interface (``schema``) is checked
``POST /predict``  ``{"results": [one prediction per task], "model_version": ...}``
``POST /webhook``  the project's events (Label Studio adds this webhook when the model is connected):
                   annotations created or updated are recorded, "Start Training" trains now
``GET /versions``  ``{"versions": [the current version]}``
=================  ==========================================================================================

Why Starlette and uvicorn rather than the ``label-studio-ml`` package: its release on PyPI (1.0.9) predates the
protocol above (webhooks, ``/setup``) and pins Flask 1.1.2, Werkzeug 2.0.2 and Jinja2 3.0.3, and its maintained
successor is not on PyPI. Starlette is a small, maintained toolkit and uvicorn a production server (HTTP parsing
by h11, graceful shutdown); they add two packages to what ``label-studio-sdk``, which the backend needs for
Label Studio's brush RLE anyway, brings already (anyio, h11, httpx), and Starlette's test client exercises the
routes without a socket.

Every refused request gets one line, as JSON ``{"error": ...}`` and in the server's log, and nothing is written
for it: 400 not what the protocol sends, 413 a body over :data:`MAX_BODY`, 422 a mask that fails the checks of
``saal annotate import``, 409 what the run cannot take now (an image outside the waiting batch, a run another
command holds).
"""

from __future__ import annotations

import json
import socket
import traceback
from typing import TYPE_CHECKING, Any, Callable

from ..errors import DataError, SaalError
from .backend import Backend, BadRequest

if TYPE_CHECKING:  # the web packages are the optional 'serve' extra: imported where the server is built
    from starlette.applications import Starlette
    from starlette.requests import Request

#: The largest request body accepted: a full-resolution brush annotation is a few MB of RLE.
MAX_BODY = 64 * 1024 * 1024
ROUTES = "GET /health, POST /setup, POST /predict, POST /webhook, GET /versions"


class TooLarge(BadRequest):
    """A request body over :data:`MAX_BODY`."""


def _status(exc: SaalError) -> int:
    if isinstance(exc, TooLarge):
        return 413
    if isinstance(exc, BadRequest):
        return 400
    return 422 if isinstance(exc, DataError) else 409


async def _json_body(request: Request) -> Any:
    """The request's JSON, read up to :data:`MAX_BODY` (a declared or streamed body beyond it is refused)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise TooLarge(f"the request body of {declared} bytes is over the limit of {MAX_BODY}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise TooLarge(f"the request body is over the limit of {MAX_BODY} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not JSON") from None


def create_app(backend: Backend) -> Starlette:
    """The ASGI application of ``backend`` (started by the caller)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def endpoint(method: Callable[..., dict[str, Any]], with_body: bool):
        async def handle(request: Request) -> JSONResponse:
            try:
                if with_body:
                    result = await run_in_threadpool(method, await _json_body(request))
                else:
                    result = await run_in_threadpool(method)
            except SaalError as exc:
                line = " ".join(str(exc).split())
                status = _status(exc)
                backend.log(f"{request.method} {request.url.path} refused ({status}): {line}")
                return JSONResponse({"error": line}, status_code=status)
            except Exception as exc:
                line = f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}"
                backend.log(f"{request.method} {request.url.path}: {line}\n{traceback.format_exc()}")
                return JSONResponse({"error": line}, status_code=500)
            return JSONResponse(result)

        return handle

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        line = {404: f"{request.method} {request.url.path}: no such endpoint; the ML backend answers {ROUTES}",
                405: f"{request.method} {request.url.path}: wrong method; {ROUTES}"}.get(
            code, f"{request.method} {request.url.path}: HTTP {code}")
        backend.log(f"refused ({code}): {line}")
        return JSONResponse({"error": line}, status_code=code)

    routes = [Route("/health", endpoint(backend.health, False), methods=["GET"]),
              Route("/setup", endpoint(backend.setup, True), methods=["POST"]),
              Route("/predict", endpoint(backend.predict, True), methods=["POST"]),
              Route("/webhook", endpoint(backend.webhook, True), methods=["POST"]),
              Route("/versions", endpoint(backend.versions, False), methods=["GET"])]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (SaalError naming them when the address is taken or not ours)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart right after a kill finds it free
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SaalError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def serve(backend: Backend, sock: socket.socket) -> None:
    """Start ``backend`` and answer Label Studio on ``sock`` until interrupted (Ctrl-C, SIGTERM)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(backend), log_level="warning", access_log=False,
                                           lifespan="off", timeout_graceful_shutdown=5))
    try:
        backend.start()
        server.run(sockets=[sock])
    finally:
        backend.close()
        sock.close()
