"""``GET /healthz`` from the operator's event loop, from the first moment of startup.

kopf's own ``--liveness`` endpoint starts only after the startup handlers return, and a standby
waits in one (:mod:`podkit_operator.leader`) until it leads: with kopf's endpoint the kubelet
would restart every standby. This one answers as long as the event loop does (the same test as
kopf's), and says whether the process leads.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web


async def serve(port: int, leading: Callable[[], bool]) -> web.AppRunner:
    """Serve ``/healthz`` on ``port`` (all addresses) until the returned runner is cleaned up."""
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok: leader\n" if leading() else "ok: standby\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()  # noqa: S104 (the kubelet probes it)
    return runner
