"""Stalled request bodies against a live API server: the memory they hold, and whether it comes back.

    python bench/stalled_bodies.py [--clients 60]

Starts `python -m minicpm_core.api` (tiny checkpoint, CPU, 127.0.0.1, an API key) in a subprocess and
opens `--clients` connections that each announce an 8 MB body and send 7 MB of it, then stall (the
issue's attack: before the guard's budget, +590 MB that stayed after they closed). psutil samples the
server's RSS; the figures are above the idle server:
1. with the key, as shipped (guard.BODIES_BUDGET_BYTES for all unfinished bodies, 503 past it);
2. the same with the budget lifted (what the guard alone prevents), in the same run;
3. without the key: refused on its headers, no body read.
Each row gives the peak while the clients stall, and the RSS once they have closed.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hostile import PeakRSS, free_port  # noqa: E402

from minicpm_core.api.guard import BODIES_BUDGET_BYTES, BODY_TIMEOUT_S  # noqa: E402
from testkit.checkpoint import write_checkpoint  # noqa: E402

KEY = "bench-key"
MB = 1 << 20
ANNOUNCED, SENT = 8 * MB, 7 * MB
SETTLE_S = 3.0  # how long the RSS is given to come back once the clients have closed

SERVE = """
import sys
from minicpm_core.api import app
if sys.argv[1] == "unbounded":
    app.create_app.__kwdefaults__["bodies_budget_bytes"] = 1 << 40
from minicpm_core.api.__main__ import main
sys.exit(main(sys.argv[2:]))
"""


def start(checkpoint: Path, port: int, budget: str) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE, budget, "--model", str(checkpoint), "--device", "cpu", "--dtype", "float32",
         "--host", "127.0.0.1", "--port", str(port), "--api-key", KEY],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    for line in server.stderr:
        if "Uvicorn running on" in line:
            threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()  # drain
            return server
    raise SystemExit("the server did not start")


def stall(port: int, with_key: bool) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=BODY_TIMEOUT_S)
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {ANNOUNCED}\r\n" + (f"Authorization: Bearer {KEY}\r\n" if with_key else "") + "\r\n")
    try:
        sock.sendall(head.encode() + b" " * SENT)
    except OSError:
        pass  # refused (401, 503) before all of it was sent: the server closed the connection
    return sock


def attack(port: int, process: psutil.Process, clients: int, with_key: bool) -> tuple[float, float]:
    idle = process.memory_info().rss
    with PeakRSS(process) as peak:
        sockets = [None] * clients
        threads = [threading.Thread(target=lambda i=i: sockets.__setitem__(i, stall(port, with_key)))
                   for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(1.0)  # the stall itself: the bodies sit unfinished
    for sock in sockets:
        sock.close()
    time.sleep(SETTLE_S)
    return (peak.peak - idle) / MB, (process.memory_info().rss - idle) / MB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=60)
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_checkpoint(Path(tmp) / "ckpt")
        print(f"{args.clients} clients, each announcing {ANNOUNCED // MB} MB and sending {SENT // MB} MB, then "
              f"stalling (budget {BODIES_BUDGET_BYTES // MB} MB, body deadline {BODY_TIMEOUT_S:g} s)")
        print("| case | peak RSS while stalled | RSS after they closed |")
        print("|---|---|---|")
        for label, budget, with_key in (("with the key, as shipped", "shipped", True),
                                        ("with the key, budget lifted", "unbounded", True),
                                        ("without the key", "shipped", False)):
            port = free_port()
            server = start(checkpoint, port, budget)
            try:
                peak, after = attack(port, psutil.Process(server.pid), args.clients, with_key)
            finally:
                server.terminate()
                server.wait(30)
            print(f"| {label} | +{peak:.0f} MB | +{after:.0f} MB |", flush=True)


if __name__ == "__main__":
    main()
