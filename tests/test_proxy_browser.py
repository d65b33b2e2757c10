"""Streamlit's CORS and XSRF checks behind a rewriting reverse proxy (why .streamlit/config.toml turns them off).

What is assumed of the proxy (AutoDL's "custom service" cannot be reached from here): the browser
opens a public origin (here http://public.test:<proxy port>, mapped to loopback in Chromium), and the
proxy forwards to the app with the Host rewritten to the internal address (127.0.0.1:<app port>), as
nginx's default `proxy_set_header Host $proxy_host` does, passing Origin and cookies through unless
told to drop Streamlit's XSRF cookie.

What Streamlit 1.67 (starlette) does; 1.65's tornado server makes the same two checks (tornado's
same-host test then the same allowlist; tornado's XSRF check), not run here:
- websocket: with `server.enableCORS` on, an Origin whose host:port differs from Host is accepted only
  if its host name is localhost/127.0.0.1/0.0.0.0, the machine's IPs, `browser.serverAddress`, or in
  `server.corsAllowedOrigins`; otherwise 403 and the app never connects;
- upload (PUT /_stcore/upload_file/...): with `server.enableXsrfProtection` on, the X-Xsrftoken header
  (the frontend copies it from the `_streamlit_xsrf` cookie) must match that cookie; otherwise 403.

So protections on work behind such a proxy only when the public origin is listed in
`server.corsAllowedOrigins` (a per-machine URL, unknown to a shipped config) and the cookie gets
through. The proxy here records the status of every upstream websocket handshake and upload.
"""

from __future__ import annotations

import asyncio
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from browser_utils import free_port, running_chromium

sync_api = pytest.importorskip("playwright.sync_api")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
ws_client = pytest.importorskip("websockets.asyncio.client")  # Streamlit 1.67 brings it; 1.65 may not
pytest.importorskip("starlette")
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route, WebSocketRoute  # noqa: E402
from starlette.websockets import WebSocket, WebSocketDisconnect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

from browser_utils import StreamlitServer  # noqa: E402

PUBLIC_HOST = "public.test"
EVENT_WAIT_S = 120  # an upper bound for the page to reach the step, never a measured time
UPLOADER_APP = """import streamlit as st
uploaded = st.file_uploader("Import")
if uploaded is not None:
    st.write(f"got {uploaded.name}: {len(uploaded.getvalue())} bytes")
"""
HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "accept-encoding", "content-encoding"}


class RewritingProxy:
    """HTTP and websocket reverse proxy on 127.0.0.1 that sets Host to the upstream's; `events` gets
    ("ws", status) for each upstream handshake and ("PUT", status) for each upload."""

    def __init__(self, upstream_port: int, drop_xsrf_cookie: bool = False):
        self.upstream = f"127.0.0.1:{upstream_port}"
        self.drop_xsrf_cookie = drop_xsrf_cookie
        self.events: queue.Queue = queue.Queue()
        self.port = free_port()
        app = Starlette(routes=[WebSocketRoute("/{path:path}", self.websocket),
                                Route("/{path:path}", self.http, methods=["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def _cookie(self, header: str | None) -> str | None:
        if not header or not self.drop_xsrf_cookie:
            return header
        return "; ".join(c for c in header.split("; ") if not c.startswith("_streamlit_xsrf="))

    async def http(self, request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k not in HOP_HEADERS and k != "cookie"}
        cookie = self._cookie(request.headers.get("cookie"))
        if cookie:
            headers["cookie"] = cookie
        url = f"http://{self.upstream}{request.url.path}" + (f"?{request.url.query}" if request.url.query else "")
        async with httpx.AsyncClient() as client:  # Host comes from the URL: the internal address
            upstream = await client.request(request.method, url, headers=headers, content=await request.body())
        if request.method == "PUT":
            self.events.put(("PUT", upstream.status_code))
        response = Response(upstream.content, status_code=upstream.status_code)
        for key, value in upstream.headers.multi_items():
            if key in HOP_HEADERS or (self.drop_xsrf_cookie and key == "set-cookie" and "_streamlit_xsrf=" in value):
                continue
            response.raw_headers.append((key.encode("latin-1"), value.encode("latin-1")))
        return response

    async def websocket(self, browser: WebSocket) -> None:
        offered = browser.headers.get("sec-websocket-protocol")
        headers = {"Cookie": c} if (c := self._cookie(browser.headers.get("cookie"))) else {}
        try:
            upstream = await ws_client.connect(
                f"ws://{self.upstream}{browser.url.path}", origin=browser.headers.get("origin"),
                subprotocols=[p.strip() for p in offered.split(",")] if offered else None,
                additional_headers=headers, max_size=None)
        except InvalidStatus as exc:
            self.events.put(("ws", exc.response.status_code))
            await browser.close(code=1008)
            return
        self.events.put(("ws", 101))
        await browser.accept(subprotocol=upstream.subprotocol)
        await asyncio.gather(self._to_upstream(browser, upstream), self._to_browser(browser, upstream))

    @staticmethod
    async def _to_upstream(browser: WebSocket, upstream) -> None:
        try:
            while True:
                message = await browser.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await upstream.send(message.get("bytes") or message.get("text") or b"")
        except (WebSocketDisconnect, ConnectionClosed):
            pass
        await upstream.close()

    @staticmethod
    async def _to_browser(browser: WebSocket, upstream) -> None:
        try:
            async for message in upstream:
                await (browser.send_bytes(message) if isinstance(message, bytes) else browser.send_text(message))
        except (WebSocketDisconnect, ConnectionClosed, RuntimeError):
            pass

    def wait_for(self, kind: str) -> int:
        deadline = time.monotonic() + EVENT_WAIT_S
        while True:  # each get waits at most until the deadline; queue.Empty past it
            got, status = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            if got == kind:
                return status

    def __enter__(self) -> RewritingProxy:
        self.thread.start()
        deadline = time.monotonic() + EVENT_WAIT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the proxy did not start")
            threading.Event().wait(0.05)  # uvicorn offers no start event to wait on
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class UploaderServer(StreamlitServer):
    """A one-uploader Streamlit app on 127.0.0.1 with both checks on or off and the given allowed origins."""

    def __init__(self, tmp: Path, checks: bool, allowed_origins: list[str]):
        script = tmp / "uploader.py"
        script.write_text(UPLOADER_APP, encoding="utf-8")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = tmp / "streamlit.log"
        command = [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
                   "--server.port", str(self.port), "--server.address", "127.0.0.1",
                   "--server.enableCORS", str(checks).lower(), "--server.enableXsrfProtection", str(checks).lower(),
                   "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
        for origin in allowed_origins:
            command += ["--server.corsAllowedOrigins", origin]
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(command, cwd=tmp, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)


@pytest.fixture(scope="module")
def browser():
    with running_chromium(extra_args=(f"--host-resolver-rules=MAP {PUBLIC_HOST} 127.0.0.1",)) as chromium:
        yield chromium


def upload_through(browser, proxy: RewritingProxy) -> tuple[object, int]:
    """Open the app through the proxy and, if its websocket got through, upload a file; the page and
    the status of the first upstream websocket handshake."""
    page = browser.new_context().new_page()
    page.set_default_timeout(EVENT_WAIT_S * 1000)
    page.goto(f"http://{PUBLIC_HOST}:{proxy.port}/")
    ws_status = proxy.wait_for("ws")
    if ws_status == 101:
        page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
            files=[{"name": "chat.json", "mimeType": "application/json", "buffer": b'{"messages": []}'}])
    return page, ws_status


@pytest.mark.parametrize("checks, allowed, drop_cookie, ws_status, put_status", [
    (True, False, False, 403, None),  # the public origin is not known to Streamlit: no websocket, no app
    (True, True, False, 101, 204),    # listed, cookie passed: the upload works with both checks on
    (True, True, True, 101, 403),     # listed, but the proxy drops the XSRF cookie: the upload is refused
    (False, False, True, 101, 204),   # the shipped config.toml (checks off): works behind either proxy
])
def test_uploads_behind_a_host_rewriting_proxy(browser, tmp_path, checks, allowed, drop_cookie, ws_status,
                                               put_status):
    server = UploaderServer(tmp_path, checks, [f"http://{PUBLIC_HOST}"] if allowed else [])
    with server:
        with RewritingProxy(server.port, drop_xsrf_cookie=drop_cookie) as proxy:
            page, got_ws_status = upload_through(browser, proxy)
            try:
                assert got_ws_status == ws_status
                if put_status is not None:
                    assert proxy.wait_for("PUT") == put_status
                if put_status == 204:
                    sync_api.expect(page.get_by_text("got chat.json: 16 bytes")).to_be_visible(
                        timeout=EVENT_WAIT_S * 1000)
            finally:
                page.context.close()
