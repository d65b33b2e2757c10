"""A Streamlit client without a browser, as an attacker would write one: the websocket at /_stcore/stream
speaking Streamlit's protobuf BackMsg/ForwardMsg, and raw HTTP for uploads.

    with WireSession(server.url) as session:
        session.run()                      # a rerun_script BackMsg, read until the script finished
        session.send_clear_cache()         # bytes 28 01
        session.session_id                 # what upload URLs carry
"""

from __future__ import annotations

import socket
import time
import uuid
from urllib.parse import urlsplit

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.sync.client import connect

WIRE_TIMEOUT_S = 60.0


class WireSession:
    def __init__(self, base_url: str, cookie: str | None = None):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port
        headers = {"Cookie": cookie} if cookie else {}
        self.ws = connect(f"ws://{self.host}:{self.port}/_stcore/stream", subprotocols=["streamlit"],
                          additional_headers=headers, max_size=None, open_timeout=WIRE_TIMEOUT_S)
        self.session_id: str | None = None
        self.received: list[ForwardMsg] = []

    def __enter__(self) -> WireSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.ws.close()

    def send(self, msg: BackMsg) -> None:
        self.ws.send(msg.SerializeToString())

    def send_clear_cache(self) -> None:
        data = BackMsg(clear_cache=True).SerializeToString()
        assert data == b"\x28\x01"  # the bytes
        self.ws.send(data)

    def run(self, query_string: str = "", timeout: float = WIRE_TIMEOUT_S) -> list[ForwardMsg]:
        """Ask for a run (as a page load does) and read until the script has finished."""
        self.send(BackMsg(rerun_script=ClientState(query_string=query_string, page_script_hash="")))
        return self.read_until(lambda msg: msg.WhichOneof("type") == "script_finished", timeout)

    def read_until(self, done, timeout: float = WIRE_TIMEOUT_S) -> list[ForwardMsg]:
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching message in {timeout} s; saw {[m.WhichOneof('type') for m in seen]}")
            msg = ForwardMsg()
            msg.ParseFromString(self.ws.recv(timeout=left))
            seen.append(msg)
            self.received.append(msg)
            if msg.WhichOneof("type") == "new_session":
                self.session_id = msg.new_session.initialize.session_id
            if done(msg):
                return seen

    def texts(self) -> list[str]:
        """Every text element (markdown, titles, captions) the server has sent this session."""
        out = []
        for msg in self.received:
            if msg.WhichOneof("type") == "delta" and msg.delta.WhichOneof("type") == "new_element":
                element = msg.delta.new_element
                kind = element.WhichOneof("type")
                if kind in ("markdown", "heading", "alert", "text"):
                    out.append(getattr(getattr(element, kind), "body", ""))
        return out


def put_upload(host: str, port: int, session_id: str, size: int, *, announce: int | None = None,
               timeout: float = WIRE_TIMEOUT_S) -> int | None:
    """PUT a multipart file of `size` bytes to the upload endpoint; the HTTP status, or None when the
    connection ended without one. `announce` sends a larger Content-Length than the bytes sent, then
    closes: an upload aborted half way."""
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c.json\"\r\n"
            "Content-Type: application/json\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + size + len(tail)
    request = (f"PUT /_stcore/upload_file/{session_id}/{uuid.uuid4()} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
               f"Content-Length: {announce or length}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(request + head)
            chunk = b"[" + b" " * (1 << 20)
            sent = 0
            while sent < size:
                piece = chunk[: min(len(chunk), size - sent)]
                sock.sendall(piece)
                sent += len(piece)
            if announce is not None:
                return None  # hang up half way
            sock.sendall(tail)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the end: the status is still there to read
        received = b""
        try:
            while chunk := sock.recv(1 << 16):
                received += chunk
        except ConnectionResetError:
            pass
    return int(received.split(b" ", 2)[1]) if received.startswith(b"HTTP/1.1 ") else None
