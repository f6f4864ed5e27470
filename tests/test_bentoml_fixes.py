"""service.bentoml_fixes: after the fix, BentoML's request-timeout middleware leaves no timers
behind and still answers 504 when a handler is slower than the timeout. Run against the installed
BentoML, through the middleware list BentoML itself builds, so a BentoML change that breaks either
property (or moves the middleware) fails here."""
import asyncio

import httpx
from bentoml._internal.server.base_app import BaseAppFactory
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from service import bentoml_fixes

REQUESTS = 300
HANDFUL = 5


class _Factory(BaseAppFactory):
    name = "fixes-test"


def _app(timeout: float):
    """A Starlette app wrapped in the middleware BentoML adds for `traffic.timeout`."""
    async def fast(request):
        return PlainTextResponse("ok")

    async def slow(request):
        await asyncio.sleep(timeout * 5)
        return PlainTextResponse("too late")

    app = Starlette(routes=[Route("/fast", fast), Route("/slow", slow)])
    middlewares = _Factory(timeout=timeout).middlewares
    assert middlewares, "BentoML no longer adds a timeout middleware for traffic.timeout"
    for m in reversed(middlewares):
        app = m.cls(app, *m.args, **m.kwargs)
    return app


def _pending_timers(loop: asyncio.AbstractEventLoop) -> int:
    return sum(not h.cancelled() for h in loop._scheduled)  # asyncio's own timer heap


def _run(coro_fn):
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro_fn(loop))
    finally:
        loop.close()


def test_the_fix_is_applied_exactly_when_bentoml_has_the_defect():
    from bentoml._internal.server.http import traffic

    had_defect = bentoml_fixes.apply()
    assert bentoml_fixes.apply() is had_defect  # idempotent
    assert not bentoml_fixes.leaves_timer_scheduled(traffic.TimeoutMiddleware)


def test_many_requests_leave_a_handful_of_timers_on_the_loop():
    bentoml_fixes.apply()

    async def go(loop):
        transport = httpx.ASGITransport(app=_app(timeout=60))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for _ in range(REQUESTS):
                assert (await client.get("/fast")).status_code == 200
            return _pending_timers(loop)

    assert _run(go) <= HANDFUL


def test_a_handler_slower_than_the_timeout_still_gets_504():
    bentoml_fixes.apply()

    async def go(loop):
        transport = httpx.ASGITransport(app=_app(timeout=0.1))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            slow = await client.get("/slow")
            fast = await client.get("/fast")
            return slow, fast, _pending_timers(loop)

    slow, fast, pending = _run(go)
    assert slow.status_code == 504 and "0.1 seconds" in slow.json()["error"]
    assert fast.status_code == 200 and fast.text == "ok"
    assert pending <= HANDFUL
