"""The panel's live dot follows the real link to the control plane, in a real JupyterLab and Chromium.

This module's lab runs on a redis-server of its own (``redis_server`` overridden below), so the
test can stop it, the way a Redis outage looks to the service, and start it again on the same port
(its AOF brings the devices back), without touching the session's redis the other tests share.
The dot must turn from live to "control plane unreachable" while Redis is down, although the
browser's WebSocket to the Jupyter server stays up, and back to live once it answers again.
"""

from __future__ import annotations

import pytest

from tests.browser.helpers import open_vqpu_panel, screenshot
from tests.conftest import need_binary
from tests.support import RedisServer

pytestmark = pytest.mark.browser

#: Seconds the service may take to notice (the socket re-sends devices every devices_interval = 2 s,
#: the panel re-reads them every 10 s; a loaded 2-core box is slower).
NOTICE_MS = 60_000


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A redis-server for this module alone: the test stops and restarts it."""
    need_binary("redis-server", "the control plane's store")
    server = RedisServer(tmp_path_factory.mktemp("redis-live-dot")).start()
    yield server
    server.stop()


def test_the_live_dot_shows_the_control_plane_unreachable_and_recovers(lab_page, vqpu_lab, redis_server):
    from playwright.sync_api import expect

    page = lab_page
    panel = open_vqpu_panel(page)
    dot = panel.locator(".jp-vqpu-connection")
    expect(dot).to_have_attribute("data-mode", "live", timeout=NOTICE_MS)
    expect(dot).to_have_text("live")
    live_colour = dot.evaluate("n => getComputedStyle(n, '::before').backgroundColor")

    redis_server.stop()
    try:
        expect(dot).to_have_attribute("data-mode", "unreachable", timeout=NOTICE_MS)
        expect(dot).to_have_text("control plane unreachable")
        assert "unreachable" in (dot.get_attribute("title") or "")
        down_colour = dot.evaluate("n => getComputedStyle(n, '::before').backgroundColor")
        assert down_colour != live_colour, (down_colour, live_colour)
        # the page itself still reaches the Jupyter server: this is not the browser being offline
        assert page.request.get(f"{vqpu_lab.url}api/status", headers={
            "Authorization": f"token {vqpu_lab.token}"}).status == 200
        screenshot(page, "panel-unreachable.png", locator=panel)
    finally:
        # the same directory and port: its AOF brings the data back; the fixture stops this process
        redis_server.proc = RedisServer(redis_server.dir, port=redis_server.port).start().proc
    expect(dot).to_have_attribute("data-mode", "live", timeout=NOTICE_MS)
    expect(panel.locator('.jp-vqpu-device[data-device="fez"]')).to_be_visible()
