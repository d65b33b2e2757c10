"""Engine benchmarks on a MiniCPM-2B-wide random checkpoint with few layers, CPU, ratios from one run.

    python bench/engine.py [--layers 4] [--tokens 64] [--repeats 5] [--dtype bfloat16]
    python bench/engine.py --overhead-only [--shapes small,2b] [--tokens 128] [--repeats 7]

`--overhead-only` measures only 1 (per-token overhead), on each shape of `--shapes`: "small" is
1,024 wide with 4 layers (where the overhead shows most: little compute per token), "2b" is
MiniCPM-2B's width with `--layers` layers. Both have the real 122,753-token vocabulary. Besides the
engine's own stream it times the same request streamed through the HTTP API (`/v1/chat/completions`
with `stream: true`, uvicorn on 127.0.0.1 in this process, an httpx client reading the SSE chunks).

1. streaming overhead: tokens/s through `Engine.submit(...)` iterated as text, divided by a bare
   `model.generate` of the same prompt and length (goal >= 0.97);
2. follow-up latency: time to first token at turn 10 of a conversation with >= 2,000 tokens of history,
   divided by the seed's way (the model's chat() re-encodes the whole history each turn, i.e. a full
   prefill; goal <= 0.25);
3. four concurrent requests: aggregate tokens/s divided by one request alone (goal >= 0.9).

Random weights can emit EOS or a stop marker early; the script checks that every compared run
produced the same number of tokens and says so if not.
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testkit.checkpoint import INIT_STD, minicpm_config, write_checkpoint, write_weights  # noqa: E402
from minicpm_core.engine import Engine  # noqa: E402
from minicpm_core.loader import load_model  # noqa: E402
from minicpm_core.prefix_cache import PrefixCache  # noqa: E402
from minicpm_core.prompt import encode  # noqa: E402

QUESTION = [{"role": "user", "content": "请详细介绍一下北京的历史和文化。Tell me about Beijing."}]


SMALL_SHAPE = dict(hidden_size=1024, num_hidden_layers=4, num_attention_heads=16, intermediate_size=2560,
                   vocab_size=122753, dim_model_base=256)


def checkpoint(layers: int) -> Path:
    path = Path(tempfile.gettempdir()) / f"minicpm-bench-wide-{layers}l"
    if not (path / "config.json").exists():
        write_checkpoint(path, full_size=True, num_layers=layers)
    return path


def small_checkpoint() -> Path:
    """1,024 wide, 4 layers, real vocabulary: the tokenizer and layout of a tiny checkpoint, other weights."""
    path = Path(tempfile.gettempdir()) / "minicpm-bench-1024w-4l"
    if not (path / "config.json").exists():
        write_checkpoint(path)
        config = minicpm_config(**SMALL_SHAPE)
        (path / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        generator = torch.Generator().manual_seed(0)
        write_weights(path, config, lambda name, shape: torch.randn(shape, generator=generator) * INIT_STD
                      if len(shape) > 1 else torch.ones(shape), weights="safetensors", dtype=torch.bfloat16)
    return path


def bare_generate(lm, ids: list[int], tokens: int) -> tuple[float, int]:
    input_ids = torch.tensor([ids])
    start = time.perf_counter()
    with torch.no_grad():
        out = lm.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=tokens,
                                do_sample=False, repetition_penalty=1.0)
    elapsed = time.perf_counter() - start
    return elapsed, out.shape[1] - len(ids)


def engine_stream(engine: Engine, tokens: int) -> tuple[float, int]:
    start = time.perf_counter()
    generation = engine.submit(QUESTION, {"temperature": 0, "repetition_penalty": 1.0, "max_new_tokens": tokens})
    for _ in generation:
        pass
    elapsed = time.perf_counter() - start
    return elapsed, generation.stats.completion_tokens


def streaming_overhead(lm, tokens: int, repeats: int) -> dict:
    engine = Engine(lm, prefix_cache=PrefixCache(max_entries=0))  # same work as bare: full prefill each time
    ids = encode(QUESTION, lm.tokenizer)
    bare_generate(lm, ids, 4)  # warm-up
    engine_stream(engine, 4)
    bare, ours = [], []
    for _ in range(repeats):  # interleaved, so drift on a shared machine hits both alike
        t, n = bare_generate(lm, ids, tokens)
        bare.append((n / t, n))
        t, n = engine_stream(engine, tokens)
        ours.append((n / t, n))
    engine.close()
    lengths = {n for _, n in bare + ours}
    return {"bare_tok_s": statistics.median(r for r, _ in bare), "engine_tok_s": statistics.median(r for r, _ in ours),
            "lengths": sorted(lengths)}


class _Server:
    """uvicorn on a free 127.0.0.1 port in a daemon thread, as a one-worker deployment runs it."""

    def __init__(self, app):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def api_stream(client, url: str, tokens: int) -> tuple[float, int]:
    body = {"model": "bench", "messages": QUESTION, "stream": True, "temperature": 0, "repetition_penalty": 1.0,
            "max_tokens": tokens, "stream_options": {"include_usage": True}}
    start, completion = time.perf_counter(), None
    with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                usage = json.loads(line[6:]).get("usage")
                completion = usage["completion_tokens"] if usage else completion
    return time.perf_counter() - start, completion


def per_token_overhead(lm, tokens: int, repeats: int) -> dict:
    """Bare generate, the engine's stream and the API's SSE stream of the same greedy request, interleaved."""
    import httpx

    from minicpm_core.api import create_app

    engine = Engine(lm, prefix_cache=PrefixCache(max_entries=0))  # same work as bare: full prefill each time
    ids = encode(QUESTION, lm.tokenizer)
    runs: dict[str, list[tuple[float, int]]] = {"bare": [], "engine": [], "api": []}
    with _Server(create_app(engine, model_name="bench")) as url, httpx.Client(timeout=600) as client:
        bare_generate(lm, ids, 4)  # warm-up, all three paths
        engine_stream(engine, 4)
        api_stream(client, url, 4)
        for _ in range(repeats):
            for name, run in (("bare", lambda: bare_generate(lm, ids, tokens)),
                              ("engine", lambda: engine_stream(engine, tokens)),
                              ("api", lambda: api_stream(client, url, tokens))):
                t, n = run()
                runs[name].append((n / t, n))
    engine.close()
    result = {name: statistics.median(r for r, _ in values) for name, values in runs.items()}
    # the ratio of each round's pair, then the median: a round's runs share the machine's load of the moment
    for name in ("engine", "api"):
        result[f"{name}_ratio"] = statistics.median(o[0] / b[0] for o, b in zip(runs[name], runs["bare"]))
    result["lengths"] = sorted({n for values in runs.values() for _, n in values})
    # what the ratio means elsewhere: the extra wall time per token, which does not scale with the model
    for name in ("engine", "api"):
        result[f"{name}_ms"] = statistics.median((1 / o - 1 / b) * 1000 for (o, _), (b, _) in zip(runs[name], runs["bare"]))
    return result


def report_overhead(label: str, o: dict) -> None:
    print(f"{label}: bare generate {o['bare']:.2f} tok/s; engine stream {o['engine']:.2f} tok/s, ratio "
          f"{o['engine_ratio']:.3f} ({o['engine_ms']:+.2f} ms/token); API SSE stream {o['api']:.2f} tok/s, ratio "
          f"{o['api_ratio']:.3f} ({o['api_ms']:+.2f} ms/token) (goal >= 0.95; reply lengths {o['lengths']})")


def follow_up_latency(lm, turns: int = 10) -> dict:
    engine = Engine(lm)
    messages, ttft, prompt_tokens = [], None, 0
    for turn in range(turns):
        question = f"第{turn}轮问题。" + "请介绍一下北京的历史和文化。Tell me about the history of Beijing. " * 6
        messages.append({"role": "user", "content": question})
        generation = engine.submit(messages, {"temperature": 0, "max_new_tokens": 8})
        reply = generation.result()
        messages.append({"role": "assistant", "content": reply})
        ttft, prompt_tokens, cached = generation.stats.ttft_seconds, generation.stats.prompt_tokens, \
            generation.stats.cached_tokens
    engine.close()
    # the seed's way for the same last prompt: chat() tokenizes everything and pre-fills it all
    ids = encode(messages[:-1], lm.tokenizer)
    seed_ttft = statistics.median(bare_generate(lm, ids, 1)[0] for _ in range(3))
    return {"prompt_tokens": prompt_tokens, "cached_tokens": cached, "engine_ttft_s": ttft, "seed_ttft_s": seed_ttft}


def concurrency(lm, tokens: int, clients: int = 4, rounds: int = 2) -> dict:
    """Alternate one-alone and all-at-once rounds, so load drift on a shared machine hits both."""
    engine = Engine(lm, prefix_cache=PrefixCache(max_entries=0))
    alone, together, completed, lengths = [], [], 0, set()
    for _ in range(rounds):
        t, n = engine_stream(engine, tokens)
        alone.append(n / t)
        lengths.add(n)
        results = []
        start = time.perf_counter()
        threads = [threading.Thread(target=lambda: results.append(engine_stream(engine, tokens)))
                   for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        together.append(sum(n for _, n in results) / (time.perf_counter() - start))
        completed += len(results)
        lengths |= {n for _, n in results}
    engine.close()
    return {"alone_tok_s": statistics.median(alone), "aggregate_tok_s": statistics.median(together),
            "completed": completed, "requests": clients * rounds, "lengths": sorted(lengths)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="auto", help="auto: bf16 where the CPU has it, else fp32")
    parser.add_argument("--overhead-only", action="store_true", help="only the per-token overhead, on --shapes")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's; 1 is steadier on a shared machine)")
    parser.add_argument("--shapes", default="small,2b", help="for --overhead-only: small (1,024 wide, 4 layers), "
                        "2b (MiniCPM-2B width, --layers layers)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.overhead_only:
        for shape in args.shapes.split(","):
            path = small_checkpoint() if shape == "small" else checkpoint(args.layers)
            lm = load_model(path, device="cpu", dtype=args.dtype)
            label = "1,024 wide, 4 layers" if shape == "small" else f"MiniCPM-2B width, {args.layers} layers"
            report_overhead(f"{label}, {lm.dtype_name}, torch threads {torch.get_num_threads()}",
                            per_token_overhead(lm, args.tokens, args.repeats))
        return
    lm = load_model(checkpoint(args.layers), device="cpu", dtype=args.dtype)
    print(f"model: MiniCPM-2B width, {args.layers} layers, {lm.dtype_name}, cpu, torch threads {torch.get_num_threads()}")

    s = streaming_overhead(lm, args.tokens, args.repeats)
    print(f"1. streaming: bare generate {s['bare_tok_s']:.2f} tok/s, engine stream {s['engine_tok_s']:.2f} tok/s, "
          f"ratio {s['engine_tok_s'] / s['bare_tok_s']:.3f} (goal >= 0.97; reply lengths {s['lengths']})")
    f = follow_up_latency(lm)
    print(f"2. follow-up: turn 10 has {f['prompt_tokens']} prompt tokens ({f['cached_tokens']} reused); TTFT engine "
          f"{f['engine_ttft_s']:.3f}s vs seed's full re-encode {f['seed_ttft_s']:.3f}s, ratio "
          f"{f['engine_ttft_s'] / f['seed_ttft_s']:.3f} (goal <= 0.25)")
    c = concurrency(lm, args.tokens)
    print(f"3. concurrency: {c['completed']}/{c['requests']} completed; aggregate {c['aggregate_tok_s']:.2f} tok/s vs alone "
          f"{c['alone_tok_s']:.2f} tok/s, ratio {c['aggregate_tok_s'] / c['alone_tok_s']:.3f} (goal >= 0.9; "
          f"reply lengths {c['lengths']})")


if __name__ == "__main__":
    main()
