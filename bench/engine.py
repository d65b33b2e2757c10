"""Engine benchmarks on a MiniCPM-2B-wide random checkpoint with few layers, CPU, ratios from one run.

    python bench/engine.py [--layers 4] [--tokens 64] [--repeats 5] [--dtype bfloat16]

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
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minicpm_core.checkpoint import write_checkpoint  # noqa: E402
from minicpm_core.engine import Engine  # noqa: E402
from minicpm_core.loader import load_model  # noqa: E402
from minicpm_core.prefix_cache import PrefixCache  # noqa: E402
from minicpm_core.prompt import encode  # noqa: E402

QUESTION = [{"role": "user", "content": "请详细介绍一下北京的历史和文化。Tell me about Beijing."}]


def checkpoint(layers: int) -> Path:
    path = Path(tempfile.gettempdir()) / f"minicpm-bench-wide-{layers}l"
    if not (path / "config.json").exists():
        write_checkpoint(path, full_size=True, num_layers=layers)
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
    args = parser.parse_args()
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
