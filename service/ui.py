"""The web page at /ui: try the zoo in a browser (`make serve`, then open http://127.0.0.1:3000/ui/).

Plain files from service/static (no build step, nothing fetched from elsewhere) served by a small
Starlette app that the BentoML service mounts at /ui. The page only calls the service's own routes
(GET /models, POST /classify); what a model sees is computed by the service (`?include_input=1`).
"""
from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PATH = "/ui"
STATIC = Path(__file__).with_name("static")

# The page needs nothing but its own files, the service's JSON, the picked file (blob:) and the
# model inputs the service returns (data:); the browser refuses anything else.
HEADERS = {
    b"content-security-policy": (b"default-src 'none'; script-src 'self'; style-src 'self'; "
                                 b"img-src 'self' blob: data:; connect-src 'self'; "
                                 b"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
}


class SecurityHeaders:
    """Adds HEADERS to every response of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS.items()]}
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


# html=True: /ui/ answers with index.html.
app = Starlette(routes=[Mount("/", SecurityHeaders(StaticFiles(directory=STATIC, html=True)), name="static")])
