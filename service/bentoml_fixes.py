"""A fix for one BentoML defect, applied before a service starts (the zoo and bench's no-op).

    python -m service.bentoml_fixes     # reproduces the defect on the installed BentoML, says if the fix applies

**The defect** (BentoML 1.4.40, `bentoml/_internal/server/http/traffic.py`): `TimeoutMiddleware`
calls `loop.call_later(timeout, ...)` for every HTTP request and never cancels the timer, so each
finished request leaves a live timer holding its future for `traffic.timeout` (60 s here). At 1,000
requests/s that is ~60,000 dead timers: the worker's memory doubles in the first minute, and garbage
collection over that heap stalls the event loop, so p99 latency grows from ~0.3 s to over a second
under steady load (issue 12 has the figures).

**The fix**: the same middleware, with the timer cancelled when the request ends (the 504 for a
request slower than the timeout is unchanged). `apply()` patches only if one request through the
installed middleware on a private event loop leaves its timer scheduled (`leaves_timer_scheduled`):
a behaviour check, not a version check, so a BentoML that fixes it upstream is left alone.

**When it can go**: once the BentoML pinned in pyproject.toml cancels the timer itself
(`python -m service.bentoml_fixes` then prints "not present"), delete this module and its two
`apply()` calls (service/service.py, bench/noop_service.py). tests/test_bentoml_fixes.py checks the
behaviour either way: a handful of timers after many requests, and a 504 for a slow handler.
"""
from __future__ import annotations

import asyncio
from typing import Any

_applied: bool | None = None  # None: not checked yet; else whether the fix was applied


async def _ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def leaves_timer_scheduled(middleware_cls: type) -> bool:
    """The reproduction: one quick request through `middleware_cls` (BentoML's TimeoutMiddleware,
    timeout 60 s) on a fresh event loop; True when a timer it scheduled is still pending after the response."""
    loop = asyncio.new_event_loop()
    handles: list[asyncio.TimerHandle] = []
    call_later = loop.call_later

    def recording_call_later(*args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        handle = call_later(*args, **kwargs)
        handles.append(handle)
        return handle

    loop.call_later = recording_call_later  # type: ignore[method-assign]  # this loop only

    async def one_request() -> None:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await middleware_cls(_ok_app, timeout=60)({"type": "http", "path": "/"}, receive, send)
        assert sent and sent[0]["status"] == 200, sent

    try:
        loop.run_until_complete(one_request())
        return any(not h.cancelled() and h.when() > loop.time() for h in handles)
    finally:
        loop.close()


async def _call_cancelling_timer(self: Any, scope: Any, receive: Any, send: Any) -> None:
    """BentoML 1.4.40's TimeoutMiddleware.__call__ with the timer cancelled when the request ends."""
    from starlette.responses import JSONResponse

    if scope["type"] not in ("http", "websocket"):
        return await self.app(scope, receive, send)
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

    async def _send(message: Any) -> None:
        if not waiter.done():
            waiter.set_result(None)
        await send(message)

    fut = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
    try:
        await waiter
    except asyncio.TimeoutError:
        if fut.cancel():
            resp = JSONResponse({"error": f"Not able to process the request in {self.timeout} seconds"},
                                status_code=504)
            await resp(scope, receive, send)
    else:
        await fut  # wait for the future to finish
    finally:
        timer.cancel()


def apply() -> bool:
    """Patch BentoML's TimeoutMiddleware in this process if it has the defect; True if patched.
    Idempotent; call it before the service's ASGI app is built (at import of the service module)."""
    global _applied
    if _applied is not None:
        return _applied
    from bentoml._internal.server.http import traffic

    _applied = leaves_timer_scheduled(traffic.TimeoutMiddleware)
    if _applied:
        # In place, on the class: BentoML imports it when it builds each app's middleware list.
        traffic.TimeoutMiddleware.__call__ = _call_cancelling_timer  # type: ignore[method-assign]
        assert not leaves_timer_scheduled(traffic.TimeoutMiddleware)
    return _applied


def main() -> None:
    import bentoml
    from bentoml._internal.server.http import traffic

    defect = leaves_timer_scheduled(traffic.TimeoutMiddleware)
    print(f"BentoML {bentoml.__version__}: TimeoutMiddleware leaves its timer scheduled after a request: "
          f"{'present' if defect else 'not present'}")
    if defect:
        apply()
        print(f"with service.bentoml_fixes.apply(): "
              f"{'still present' if leaves_timer_scheduled(traffic.TimeoutMiddleware) else 'fixed'}")


if __name__ == "__main__":
    main()
