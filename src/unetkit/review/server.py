"""The review's HTTP interface (Starlette on uvicorn): the page, its static files and the JSON/PNG API
(the requests and their answers: docs/review.md). Every request carries the token (`?token=` or
`Authorization: Bearer`), else 403. An id that was not an image at start is 404, and one that tries
to leave its folder is logged as well.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from unetkit.config import ReviewConfig
from unetkit.errors import UserError
from unetkit.review.finetune import FinetuneJob
from unetkit.review.imagery import RegionError
from unetkit.review.session import ReviewSession
from unetkit.review.store import UploadError
from unetkit.runtime import log

STATIC = {"editor.js": "text/javascript", "page.js": "text/javascript", "style.css": "text/css"}
NO_STORE = {"Cache-Control": "no-store"}


class TokenGate:
    """ASGI middleware: 403 for any request without the review's token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            given = request.query_params.get("token", "")
            header = request.headers.get("authorization", "")
            if header.lower().startswith("bearer "):
                given = header[7:].strip()
            if not secrets.compare_digest(given.encode(), self.token.encode()):
                await PlainTextResponse("forbidden: this review needs its token (open the URL it printed)\n",
                                        status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _static(name: str) -> str:
    return resources.files("unetkit.review").joinpath("static", name).read_text(encoding="utf-8")


def build_app(session: ReviewSession, token: str) -> Starlette:
    job = FinetuneJob(session)
    cap = int(session.config.max_upload_mb * 2**20)
    not_found = PlainTextResponse("no such image\n", status_code=404)
    too_big = PlainTextResponse(f"mask upload over the {session.config.max_upload_mb:g} MB limit\n", status_code=413)

    def per_image(handler: Callable[[Request, str], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """`handler(request, id)` for an id found at start, else 404; a refused upload or region is a 400."""
        async def endpoint(request: Request) -> Response:
            key = request.path_params["id"]
            if key not in session.images:
                if "/" in key or "\\" in key or ".." in key or "\x00" in key:
                    log.warning("review: refused id %r from %s (outside the images folder)", key,
                                request.client.host if request.client else "?")
                return not_found
            try:
                return await handler(request, key)
            except (RegionError, UploadError) as exc:
                return PlainTextResponse(f"{exc}\n", status_code=400)
        return endpoint

    def reader(method: Callable[..., Any], *query: str) -> Callable[[Request], Awaitable[Response]]:
        async def read(request: Request, key: str) -> Response:
            body = await run_in_threadpool(method, key, *(request.query_params.get(name) for name in query))
            if body is None:
                return PlainTextResponse("no mask for this image\n", status_code=404)
            return Response(body, media_type="image/png", headers=NO_STORE)
        return per_image(read)

    def json_reader(method: Callable[[], Any]) -> Callable[[Request], Response]:
        return lambda request: JSONResponse(method(), headers=NO_STORE)  # a plain function: Starlette runs it in a thread

    async def index(request: Request) -> Response:
        return Response(_static("index.html").replace("__TOKEN__", token), media_type="text/html", headers=NO_STORE)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return not_found
        return Response(_static(name), media_type=STATIC[name], headers=NO_STORE)

    async def put_mask(request: Request, key: str) -> Response:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > cap:
            return too_big
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > cap:
                return too_big
        try:
            seconds = float(request.headers.get("x-seconds-spent", "nan"))
        except ValueError:
            seconds = float("nan")
        path = await run_in_threadpool(session.save, key, bytes(body), seconds if 0 <= seconds < 1e7 else None)  # NaN fails too
        return JSONResponse({"id": key, "path": path})

    async def train(request: Request) -> Response:
        return JSONResponse(job.start() if request.method == "POST" else job.status(), headers=NO_STORE)

    return Starlette(routes=[
        Route("/", index), Route("/static/{name}", static), Route("/api/items", json_reader(session.items)),
        Route("/api/info", json_reader(session.info)), Route("/api/train", train, methods=["GET", "POST"]),
        Route("/api/items/{id:path}/image", reader(session.pictures.png, "reduce", "region")),
        Route("/api/items/{id:path}/prediction", reader(session.prediction_png)),
        Route("/api/items/{id:path}/thumbnail", reader(session.thumbnail)),
        Route("/api/items/{id:path}/mask", reader(session.mask_png), methods=["GET"]),
        Route("/api/items/{id:path}/mask", per_image(put_mask), methods=["PUT"]),
    ], middleware=[Middleware(TokenGate, token=token)])


class ReviewServer:
    """A running review: `url` to open, `wait()` until Ctrl-C, `stop()` (in-flight saves finish first)."""

    def __init__(self, config: ReviewConfig) -> None:
        self.session = ReviewSession(config)
        self.token = config.token or secrets.token_urlsafe(18)
        self.socket = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((config.host, config.port))
        except OSError as exc:
            self.socket.close()
            raise UserError(f"{config.host}:{config.port}: cannot listen there ({exc.strerror or exc})") from None
        self.socket.listen(128)  # connections queue from now on, even before uvicorn's loop accepts them
        self.port = self.socket.getsockname()[1]
        host = f"[{config.host}]" if ":" in config.host else config.host
        self.url = f"http://{host}:{self.port}/?token={self.token}"
        self.server = uvicorn.Server(uvicorn.Config(build_app(self.session, self.token), log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, name="unetkit-review",
                                       daemon=True)
        self.thread.start()
        while not self.server.started and self.thread.is_alive():
            time.sleep(0.01)

    def wait(self) -> None:
        """Serve until Ctrl-C (KeyboardInterrupt in the main thread), then stop."""
        try:
            while self.thread.is_alive():
                self.thread.join(0.5)
        finally:
            self.stop()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()
