"""HTTP API overhead on random checkpoints, CPU, ratios from one run.

    python bench/api.py [--shapes small,2b] [--layers 2] [--tokens 64] [--repeats 7] [--dtype auto] [--threads N]

Shapes: "small" is 1,024 wide with 4 layers (bench/engine.py's; little compute per token, so the
overhead shows most), "2b" is MiniCPM-2B's width with `--layers` layers; both have the real vocabulary.
One engine, one uvicorn server on 127.0.0.1 in this process, one keep-alive httpx client, the same
greedy prompt and length every time. Each round runs a bare `model.generate` of the same tokens, the
engine's stream and the HTTP stream, in turn, so drift on a shared machine hits all three alike.
Views of the same question:

0. streamed /v1 decode tokens/s divided by the bare `generate` of the same round (goal >= 0.95),
   median and range over the rounds; the bare run's tokens are timed by a streamer that only reads
   the clock. And the CPU time the process spends per token on each path (all threads: the
   client's parsing counts against HTTP), which load on a shared machine moves far less.
A. interleaved runs: tokens/s and time to first token (TTFT) seen by a consumer iterating
   `Engine.submit(...)` directly vs by a client reading `/v1/chat/completions` SSE chunks
   (HTTP/engine decode speed). Prefill and decode times vary run to run on a loaded
   machine, so this view is as noisy as the machine.
B. the same request, client vs server: the HTTP client's own TTFT and tokens/s against the
   engine's stats for that very request (`engine.recent`). What differs is only what HTTP adds
   (request parsing, validation, thread hops, SSE framing, the client's parsing), so this view is
   immune to prefill noise. "Extra TTFT" is the median of client TTFT - engine TTFT.

Both sides compute decode speed alike: (tokens - 1) / (last delta - first delta), tokens from the
reply's own count. The client parses SSE in this process, so its CPU cost counts against HTTP.
Honest lengths: random weights may emit EOS or a stop marker early, so decoding is greedy (identical
tokens on both paths) with repetition_penalty 1.0 and the prefix cache off (a full prefill each
run); every run's completion length is printed, and the ratios say if lengths were not all equal.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import torch
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import small_checkpoint  # noqa: E402  (bench/engine.py: the small shape, built once)
from minicpm_core.api import create_app  # noqa: E402
from testkit.checkpoint import write_checkpoint  # noqa: E402
from minicpm_core.engine import Engine  # noqa: E402
from minicpm_core.loader import load_model  # noqa: E402
from minicpm_core.prefix_cache import PrefixCache  # noqa: E402
from minicpm_core.prompt import encode  # noqa: E402

QUESTION = [{"role": "user", "content": "请详细介绍一下北京的历史和文化。Tell me about Beijing."}]


def checkpoint(layers: int) -> Path:
    path = Path(tempfile.gettempdir()) / f"minicpm-bench-wide-{layers}l"  # shared with bench/engine.py
    if not (path / "config.json").exists():
        write_checkpoint(path, full_size=True, num_layers=layers)
    return path


class Server(uvicorn.Server):
    """uvicorn in a thread on a free port, as a deployment would run it (one worker)."""

    def __init__(self, app):
        super().__init__(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self.run, daemon=True)

    async def startup(self, sockets=None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self._ready.set()

    def start(self) -> str:
        self._thread.start()
        self._ready.wait()
        if not self.started:
            raise SystemExit("uvicorn did not start")
        return f"http://127.0.0.1:{self.servers[0].sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        self.should_exit = True
        self._thread.join()


class _Clock:
    """A streamer for `generate` that only notes when each new token arrived."""

    def __init__(self):
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value) -> None:
        if self._prompt_seen:
            self.times.append(time.perf_counter())
        self._prompt_seen = True

    def end(self) -> None:
        pass


def bare(lm, tokens: int) -> dict:
    """model.generate of the same prompt and greedy settings, no engine, no text."""
    input_ids = torch.tensor([encode(QUESTION, lm.tokenizer)])
    clock = _Clock()
    start = time.perf_counter()
    with torch.no_grad():
        lm.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=tokens,
                          do_sample=False, repetition_penalty=1.0, streamer=clock)
    return timing(start, clock.times[0], clock.times[-1], len(clock.times))


def params(tokens: int) -> dict:
    return {"temperature": 0, "repetition_penalty": 1.0, "max_new_tokens": tokens}


def direct(engine: Engine, tokens: int) -> dict:
    start = time.perf_counter()
    generation = engine.submit(QUESTION, params(tokens))
    first = last = None
    for _ in generation:
        last = time.perf_counter()
        first = first or last
    return timing(start, first, last, generation.stats.completion_tokens)


def over_http(client: httpx.Client, engine: Engine, tokens: int) -> dict:
    p = params(tokens)
    body = {"model": "bench", "messages": QUESTION, "stream": True, "stream_options": {"include_usage": True},
            "temperature": p["temperature"], "repetition_penalty": p["repetition_penalty"], "max_tokens": tokens}
    start = time.perf_counter()
    first = last = completion = None
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                completion = chunk["usage"]["completion_tokens"]
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                last = time.perf_counter()
                first = first or last
    server = engine.recent[-1]  # this request's own stats: nothing else runs on this engine
    return timing(start, first, last, completion) | {
        "server_ttft": server.ttft_seconds, "server_decode_tok_s": server.tokens_per_second}


def timing(start: float, first: float, last: float, tokens: int) -> dict:
    return {"tokens": tokens, "ttft": first - start, "decode_tok_s": (tokens - 1) / (last - first),
            "total_tok_s": tokens / (last - start)}


def with_cpu(run, *args) -> dict:
    """`run(*args)`'s timings plus the CPU time this whole process spent on it, per token: what each
    path costs in work, which a loaded machine's scheduling does not move as much as wall time."""
    cpu = time.process_time()
    result = run(*args)
    return result | {"cpu_ms_per_token": (time.process_time() - cpu) * 1000 / result["tokens"]}


def measure(lm, tokens: int, repeats: int) -> dict[str, list[dict]]:
    """Rounds of bare generate, engine stream and HTTP stream of the same request."""
    engine = Engine(lm, prefix_cache=PrefixCache(max_entries=0))  # same work as bare: a full prefill each run
    server = Server(create_app(engine))
    url = server.start()
    runs: dict[str, list[dict]] = {"bare": [], "direct": [], "http": []}
    with httpx.Client(base_url=url, timeout=600) as client:
        bare(lm, 4), direct(engine, 4), over_http(client, engine, 4)  # warm-up: first-call allocations, connection
        for _ in range(repeats):
            runs["bare"].append(with_cpu(bare, lm, tokens))
            runs["direct"].append(with_cpu(direct, engine, tokens))
            runs["http"].append(with_cpu(over_http, client, engine, tokens))
    server.stop()
    engine.close()
    return runs


def report(runs: dict[str, list[dict]], tokens: int) -> None:
    def median(path: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[path])

    lengths = sorted({r["tokens"] for rs in runs.values() for r in rs})
    print(f"completion lengths seen: {lengths}" + ("" if lengths == [tokens] else
          "  (NOT all the requested length: the random model hit EOS or a stop marker; compare with care)"))
    for path, label in (("http", "streamed /v1"), ("direct", "engine stream")):
        ratios = sorted(o["decode_tok_s"] / b["decode_tok_s"] for o, b in zip(runs[path], runs["bare"]))
        print(f"0. {label} decode tok/s / bare generate, per round: median {statistics.median(ratios):.3f} "
              f"(min {ratios[0]:.3f}, max {ratios[-1]:.3f}; bare {median('bare', 'decode_tok_s'):.2f} tok/s)"
              + ("  (goal >= 0.95)" if path == "http" else ""))
    cpu = {path: median(path, "cpu_ms_per_token") for path in runs}
    print(f"0. CPU time of this process per token (medians): bare {cpu['bare']:.1f} ms, engine stream "
          f"{cpu['direct']:.1f} ms ({cpu['direct'] - cpu['bare']:+.1f}), streamed /v1 incl. the client "
          f"{cpu['http']:.1f} ms ({cpu['http'] - cpu['bare']:+.1f})")
    print(f"\nA. interleaved runs (medians)     {'engine':>10} {'HTTP':>10} {'HTTP/engine':>12}")
    for name, key, fmt in (("decode tok/s (after 1st token)", "decode_tok_s", "%.2f"),
                           ("end-to-end tok/s", "total_tok_s", "%.2f"), ("time to first token (s)", "ttft", "%.4f")):
        ours, http = median("direct", key), median("http", key)
        print(f"   {name:31} {fmt % ours:>10} {fmt % http:>10} {http / ours:>12.3f}")
    http = runs["http"]
    same_speed = statistics.median(r["decode_tok_s"] / r["server_decode_tok_s"] for r in http)
    extra = sorted((r["ttft"] - r["server_ttft"]) * 1000 for r in http)
    interleaved_extra = statistics.median(h["ttft"] - d["ttft"] for d, h in zip(runs["direct"], http)) * 1000
    print(f"\nB. same request, HTTP client vs the engine's own stats for it (medians over {len(http)})")
    print(f"   decode tok/s, client / engine:   {same_speed:.3f}")
    print(f"   extra TTFT, client - engine:     {statistics.median(extra):.1f} ms (min {extra[0]:.1f}, max {extra[-1]:.1f})")
    print(f"\n1. streamed decode speed over HTTP / engine stream: {median('http', 'decode_tok_s') / median('direct', 'decode_tok_s'):.3f} "
          f"interleaved, {same_speed:.3f} same request")
    print(f"2. median extra time to first token over HTTP: {statistics.median(extra):.1f} ms same request "
          f"({interleaved_extra:.1f} ms between interleaved runs, prefill noise included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="small,2b", help="comma-separated: small (1,024 wide, 4 layers), "
                        "2b (MiniCPM-2B's width, --layers layers)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", default="auto", help="auto: bf16 where the CPU does it natively, else fp32")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's; 1 is steadier on a shared machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    for shape in args.shapes.split(","):
        path = small_checkpoint() if shape == "small" else checkpoint(args.layers)
        lm = load_model(path, device="cpu", dtype=args.dtype)
        described = "1,024 wide, 4 layers" if shape == "small" else f"MiniCPM-2B width, {args.layers} layers"
        print(f"\n=== {shape}: {described}, {lm.dtype_name}, cpu, torch threads {torch.get_num_threads()}; "
              f"{args.tokens} tokens x {args.repeats} rounds (bare, engine, HTTP)")
        report(measure(lm, args.tokens, args.repeats), args.tokens)


if __name__ == "__main__":
    main()
