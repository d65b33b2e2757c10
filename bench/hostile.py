"""Hostile requests against a live API server: the memory and time a huge prompt or history costs.

    python bench/hostile.py [--repeats 5]

Starts `python -m minicpm_core.api` on the tiny checkpoint (random weights, the upstream file
layout, a sentencepiece tokenizer) in a subprocess on 127.0.0.1, so psutil reads the server's own
RSS, sampled every 2 ms while each request runs. Times are given as a ratio to a normal request
(a short greedy reply, 8 tokens) measured in the same run; absolute times are printed too.

1. one 7 MB prompt (`POST /`), then four at once: status, time, peak RSS above the idle server;
2. a 1,000-message, 2 MB history (each message 2,000 characters, `/v1/chat/completions`):
   answered, with the oldest turns dropped; and the server CPU time spent after a client that
   sent it hangs up at once.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testkit.checkpoint import write_checkpoint  # noqa: E402

NORMAL = {"prompt": "What is the capital of France?", "max_new_tokens": 8, "temperature": 0}
SEVEN_MB = json.dumps({"prompt": "x" * (7 << 20)}).encode()  # a 7 MB body


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(checkpoint: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINICPM_")} | {"PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "minicpm_core.api", "--model", str(checkpoint), "--device", "cpu", "--dtype",
         "float32", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=Path(__file__).resolve().parents[1])
    for line in server.stderr:
        if "Uvicorn running on" in line:
            threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()  # drain
            return server
    raise SystemExit("the server did not start")


class PeakRSS:
    """Samples a process's RSS in a thread while the block runs; `.peak` is the highest seen."""

    def __init__(self, process: psutil.Process):
        self.process, self.peak, self._stop = process, 0, threading.Event()

    def __enter__(self) -> PeakRSS:
        self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def timed(client: httpx.Client, path: str, body: dict | bytes) -> tuple[int, float]:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()  # encoded before the clock starts
    start = time.perf_counter()
    reply = client.post(path, content=content, headers={"Content-Type": "application/json"})
    return reply.status_code, time.perf_counter() - start


def long_history() -> list[dict]:
    messages = []
    for i in range(500):
        messages += [{"role": "user", "content": (f"question {i}: " + "山东的泰山 mountain river " * 100)[:2000]},
                     {"role": "assistant", "content": (f"answer {i}: " + "the answer is long " * 110)[:2000]}]
    messages[-1] = {"role": "user", "content": "And the newest question?"}
    return messages


def hang_up_cpu(port: int, body: bytes, process: psutil.Process, settle: float = 3.0) -> float:
    """Server CPU seconds spent in the `settle` seconds after a client sends `body` and hangs up at once."""
    before = sum(process.cpu_times()[:2])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    time.sleep(settle)  # what is measured is what the server does meanwhile
    return sum(process.cpu_times()[:2]) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    checkpoint = Path(tempfile.gettempdir()) / "minicpm-bench-tiny"
    if not (checkpoint / "config.json").exists():
        write_checkpoint(checkpoint)
    port = free_port()
    server = start_server(checkpoint, port)
    process = psutil.Process(server.pid)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            timed(client, "/", NORMAL)  # warm-up
            normal = statistics.median(timed(client, "/", NORMAL)[1] for _ in range(args.repeats))
            idle = process.memory_info().rss
            print(f"server idle RSS {idle / 2**20:.0f} MB; a normal request ({NORMAL['max_new_tokens']} tokens) "
                  f"takes {normal * 1000:.0f} ms (median of {args.repeats})\n")

            runs = []
            for _ in range(args.repeats):
                base = process.memory_info().rss
                with PeakRSS(process) as rss:
                    status, seconds = timed(client, "/", SEVEN_MB)
                runs.append((status, seconds, rss.peak - base))
            statuses = sorted({r[0] for r in runs})
            print(f"1a. one 7 MB prompt: status {statuses}, time {statistics.median(r[1] for r in runs):.3f} s = "
                  f"{statistics.median(r[1] for r in runs) / normal:.1f}x a normal request, peak extra RSS "
                  f"{max(r[2] for r in runs) / 2**20:.0f} MB (max of {args.repeats}; goal: 4xx, < 1 s, <= 100 MB)")

            results: list[tuple[int, float]] = []

            def one() -> None:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as own:
                    results.append(timed(own, "/", SEVEN_MB))

            base = process.memory_info().rss
            with PeakRSS(process) as rss:
                threads = [threading.Thread(target=one) for _ in range(4)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
            after = process.memory_info().rss
            print(f"1b. four 7 MB prompts at once: statuses {sorted(r[0] for r in results)}, slowest "
                  f"{max(r[1] for r in results):.3f} s = {max(r[1] for r in results) / normal:.1f}x, peak extra RSS "
                  f"{(rss.peak - base) / 2**20:.0f} MB, {(after - base) / 2**20:.0f} MB after "
                  "(before the fix: 370 MB -> 5.3 GB, 9-26 s)")

            history = long_history()
            chars = sum(len(m["content"]) for m in history)
            body = {"messages": history, "max_tokens": 8, "temperature": 0}
            runs = [timed(client, "/v1/chat/completions", body) for _ in range(args.repeats)]
            seconds = statistics.median(r[1] for r in runs)
            print(f"2a. {len(history)} messages, {chars / 1e6:.1f} M characters: status {sorted({r[0] for r in runs})}, "
                  f"{seconds:.3f} s = {seconds / normal:.1f}x a normal request (goal < 5 s; before the fix: "
                  "534 s)")
            cpu = hang_up_cpu(port, json.dumps(body).encode(), process)
            print(f"2b. the same, client gone at once: {cpu:.2f} CPU-s spent by the server in the next 3 s "
                  "(before the fix: 72 CPU-s after the client hung up)")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
