"""The first measurements on a GPU: full-size random-weight MiniCPM-2B and MiniCPM5-2B, bf16, one command.

    python bench/gpu.py [--out gpu.json] [--models minicpm-2b,minicpm5-2b] [--tokens 128]
    python bench/gpu.py --smoke        # tiny shapes on the CPU in well under a minute (CI runs it)

On a bare GPU image (torch and transformers already there) it needs the project and these small wheels:
`pip install pydantic sentencepiece protobuf accelerate`: the engine's parameter schema, MiniCPM-2B's
tokenizer and its conversion, and the loader's empty-weights init (accelerate brings psutil, which
transformers' continuous batching asks for too). transformers brings tokenizers and safetensors. No
Streamlit, FastAPI, modelscope or openai is imported. It is sized to finish in under 8 minutes on one
GPU (not yet timed on one; the slow parts are writing the two random checkpoints, about 5 GB each, once
per --workdir, and compiling for the static cache); `--budget-s` (default 450) skips what would start
after that many seconds, saying so in the table.

For each model it measures, and prints one table headed by the device's name (and writes it as JSON to
`--out`):
1. load: seconds to load the checkpoint (loader.load_model); the peak GPU memory after loading, and after
   our engine's and bare generate's runs (measured before the two that allocate on their own terms);
2. batch-1 decode tokens/s of a short prompt: through our engine (Engine.submit, streamed as text), bare
   `model.generate`, and `generate` with `cache_implementation="static"` (which transformers compiles on a
   GPU; the first, compiling call is timed apart);
3. time to first token at 1k and 4k prompt tokens (4,000 on MiniCPM-2B, whose context is 4,096 with the
   reply): our engine with its prefix cache off, against bare `generate` of one token;
4. aggregate tokens/s of 4 and 16 concurrent requests (about 64 prompt tokens and 64 new tokens each):
   our engine with as many slots (`max_concurrent`), against transformers' continuous batching
   (`model.generate_batch`) on the same prompts and lengths.

Random weights: replies never end early because the model's end-of-turn ids are cleared for the
benchmark (`generation_config.eos_token_id`), so every method generates the tokens asked for; the
table still shows how many each produced. Each measurement is guarded: a failure becomes an error row
and the rest still run. The numbers decide the next engine work (batching, compilation); nothing here
is built into the engine.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minicpm_core.engine import Engine  # noqa: E402
from minicpm_core.loader import LoadedModel, load_model  # noqa: E402
from minicpm_core.prefix_cache import PrefixCache  # noqa: E402

MODELS = ("minicpm-2b", "minicpm5-2b")
FULL = {"tokens": 128, "repeats": 2, "prompts": (1024, 4000), "concurrency": (4, 16), "batch_tokens": 64}
SMOKE = {"tokens": 8, "repeats": 1, "prompts": (64,), "concurrency": (4,), "batch_tokens": 4}
FILLER = "Beijing has a long history and a rich culture. 北京历史悠久，文化灿烂。"


@dataclass
class Row:
    model: str
    metric: str
    value: float | None = None
    unit: str = ""
    note: str = ""


class Bench:
    """Collects rows; `measure` turns one measurement's failure into an error row, and skips past the budget."""

    def __init__(self, budget_s: float):
        self.rows: list[Row] = []
        self.started = time.perf_counter()
        self.budget_s = budget_s

    def measure(self, model: str, metric: str, run: Callable[[], list[Row]]) -> None:
        if time.perf_counter() - self.started > self.budget_s:
            self.rows.append(Row(model, metric, note=f"skipped: past the {self.budget_s:.0f} s budget"))
            return
        try:
            self.rows.extend(run())
        except Exception as exc:  # noqa: BLE001 - one failed measurement must not lose the others
            traceback.print_exc()
            self.rows.append(Row(model, metric, note=f"error: {type(exc).__name__}: {str(exc)[:160]}"))
        finally:
            _release()


# --- setup ---------------------------------------------------------------------------------------

def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def write_model(name: str, workdir: Path, smoke: bool) -> Path:
    """The random checkpoint of `name`, written once into `workdir` (reused by the next run)."""
    path = workdir / f"{name}-{'tiny' if smoke else 'full'}"
    done = path / ".complete"
    if done.exists():
        return path
    if name == "minicpm-2b":
        from testkit.checkpoint import write_checkpoint

        write_checkpoint(path, full_size=not smoke, weights="safetensors", dtype="bfloat16")
    else:
        from testkit import minicpm5

        minicpm5.write_checkpoint(path, size="tiny" if smoke else "2b", dtype="bfloat16")
    done.touch()
    return path


def never_stop(lm: LoadedModel) -> None:
    """Random weights may pick an end-of-turn id at any step: clear them so every method makes every token."""
    lm.model.generation_config.eos_token_id = None


def _release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def prompt_messages(engine: Engine, tokens: int, tag: str = "Q: ") -> tuple[list[dict], list[int]]:
    """A question whose prompt is about `tokens` tokens long (within one filler sentence), and its ids."""
    unit = len(engine.prepare([{"role": "user", "content": FILLER * 2}]).ids) - \
        len(engine.prepare([{"role": "user", "content": FILLER}]).ids)
    base = len(engine.prepare([{"role": "user", "content": tag + FILLER}]).ids) - unit
    repeats = max(1, (tokens - base) // max(1, unit))
    messages = [{"role": "user", "content": tag + FILLER * repeats}]
    return messages, list(engine.prepare(messages, _params(engine, 1)).ids)


def _params(engine: Engine, max_new_tokens: int) -> Any:
    from minicpm_core.params import GenerationParams

    return GenerationParams(temperature=0, repetition_penalty=1.0, max_new_tokens=max_new_tokens,
                            max_length=engine.context_length)


# --- measurements --------------------------------------------------------------------------------

def engine_reply(engine: Engine, messages: list[dict], tokens: int) -> tuple[float, int, Any]:
    """Wall seconds, tokens made and stats of one greedy reply through the engine, streamed as text."""
    device = engine.model.device
    _sync(device)
    start = time.perf_counter()
    generation = engine.submit(messages, _params(engine, tokens))
    for _ in generation:
        pass
    _sync(device)
    elapsed = time.perf_counter() - start
    if generation.stats is None or generation.stats.finish_reason == "error":
        raise RuntimeError(f"the engine's reply failed: {generation.stats}")
    return elapsed, generation.stats.completion_tokens, generation.stats


def bare_generate(lm: LoadedModel, ids: list[int], tokens: int, **extra: Any) -> tuple[float, int]:
    """Wall seconds and tokens made by one greedy `model.generate` of `ids`."""
    input_ids = torch.tensor([ids], device=lm.model.device)
    _sync(lm.model.device)
    start = time.perf_counter()
    with torch.no_grad():
        out = lm.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=tokens,
                                do_sample=False, repetition_penalty=1.0, **extra)
    _sync(lm.model.device)
    return time.perf_counter() - start, out.shape[1] - len(ids)


def measure_load(name: str, path: Path, device: torch.device) -> tuple[LoadedModel, list[Row]]:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    lm = load_model(path, device=str(device), dtype="bfloat16")
    _sync(device)
    rows = [Row(name, "load", time.perf_counter() - start, "s",
                f"{lm.num_parameters:,} parameters, {lm.dtype_name}, {lm.attn_implementation}")]
    if device.type == "cuda":
        rows.append(Row(name, "peak GPU memory after load", torch.cuda.max_memory_allocated(device) / 2**30, "GiB"))
    return lm, rows


def measure_decode(name: str, lm: LoadedModel, engine: Engine, cfg: dict) -> list[Row]:
    """Batch-1 decode: engine and bare generate interleaved (drift hits both alike), then the static cache."""
    messages, ids = prompt_messages(engine, 32)
    tokens = cfg["tokens"]
    engine_reply(engine, messages, 4)  # warm-up: kernels, allocator
    bare_generate(lm, ids, 4)
    ours, bare = [], []
    for _ in range(cfg["repeats"]):
        t, n, _ = engine_reply(engine, messages, tokens)
        ours.append((n / t, n))
        t, n = bare_generate(lm, ids, tokens)
        bare.append((n / t, n))
    ours_rate, bare_rate = statistics.median(r for r, _ in ours), statistics.median(r for r, _ in bare)
    return [
        Row(name, "decode batch 1: our engine", ours_rate, "tok/s",
            f"{ours_rate / bare_rate:.2f} x bare generate; tokens {sorted({n for _, n in ours})}"),
        Row(name, "decode batch 1: bare generate", bare_rate, "tok/s", f"tokens {sorted({n for _, n in bare})}"),
    ]


def measure_static(name: str, lm: LoadedModel, engine: Engine, cfg: dict) -> list[Row]:
    """`generate` with a static cache; on a GPU transformers compiles its forward (the first call compiles)."""
    _, ids = prompt_messages(engine, 32)
    compiled = lm.model.device.type == "cuda"
    extra: dict[str, Any] = {"cache_implementation": "static"}
    first, _ = bare_generate(lm, ids, cfg["tokens"], **extra)  # compiles (on a GPU)
    runs = [bare_generate(lm, ids, cfg["tokens"], **extra) for _ in range(cfg["repeats"])]
    rate = statistics.median(n / t for t, n in runs)
    label = "decode batch 1: generate, static cache" + (", compiled" if compiled else " (CPU: not compiled)")
    first_note = "first call (compiling)" if compiled else "first call"
    return [Row(name, label, rate, "tok/s", f"{first_note} {first:.1f} s; tokens {sorted({n for _, n in runs})}")]


def measure_ttft(name: str, lm: LoadedModel, engine: Engine, prompt_tokens: int) -> list[Row]:
    messages, ids = prompt_messages(engine, prompt_tokens)
    engine_reply(engine, messages, 1)  # warm-up at this length
    _, _, stats = engine_reply(engine, messages, 1)
    bare, _ = bare_generate(lm, ids, 1)
    label = f"TTFT, {stats.prompt_tokens:,} prompt tokens"
    return [Row(name, f"{label}: our engine", stats.ttft_seconds * 1000, "ms",
                f"{stats.ttft_seconds / bare:.2f} x bare generate of 1 token"),
            Row(name, f"{label}: bare generate", bare * 1000, "ms")]


def concurrent_prompts(engine: Engine, clients: int) -> list[tuple[list[dict], list[int]]]:
    return [prompt_messages(engine, 64, tag=f"Question {i}: ") for i in range(clients)]


def measure_engine_concurrency(name: str, lm: LoadedModel, clients: int, cfg: dict) -> list[Row]:
    """`clients` requests at once through an engine with as many slots, each read by its own thread."""
    engine = Engine(lm, max_concurrent=clients, max_queue=clients, prefix_cache=PrefixCache(max_entries=0))
    try:
        prompts = concurrent_prompts(engine, clients)
        engine_reply(engine, prompts[0][0], 2)  # warm-up
        made: list[int] = []

        def client(messages: list[dict]) -> None:
            made.append(engine_reply(engine, messages, cfg["batch_tokens"])[1])

        threads = [threading.Thread(target=client, args=(messages,)) for messages, _ in prompts]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        elapsed = time.perf_counter() - start
        if len(made) != clients:
            raise RuntimeError(f"{clients - len(made)} of {clients} requests did not finish")
        return [Row(name, f"{clients} concurrent: our engine ({clients} slots)", sum(made) / elapsed, "tok/s",
                    f"aggregate; {sum(made)} tokens in {elapsed:.1f} s")]
    finally:
        engine.close()


def measure_generate_batch(name: str, lm: LoadedModel, engine: Engine, clients: int, cfg: dict) -> list[Row]:
    """transformers' continuous batching on the same prompts and lengths. Timed from the requests' creation to
    the last one's end (its own perf_counter stamps): the manager's start (its warm-up captures CUDA graphs)
    and its shutdown are left out, as our engine's start is."""
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    inputs = [ids for _, ids in concurrent_prompts(engine, clients)]
    config = GenerationConfig(max_new_tokens=cfg["batch_tokens"], do_sample=False, eos_token_id=None,
                              pad_token_id=lm.tokenizer.pad_token_id or 0)
    on_gpu = lm.model.device.type == "cuda"
    # On a GPU it sizes its paged cache from the free memory; the CPU smoke run gives it a few blocks instead
    # of most of the machine's memory, which takes longer to allocate than the tiny model takes to answer.
    cache = None if on_gpu else ContinuousBatchingConfig(num_blocks=8, max_batch_tokens=512)
    start = time.perf_counter()
    outputs = lm.model.generate_batch(inputs=inputs, generation_config=config, continuous_batching_config=cache,
                                      warmup=on_gpu)  # its warm-up captures CUDA graphs
    wall = time.perf_counter() - start
    failed = [out.error for out in outputs.values() if out.error]
    if failed or len(outputs) != clients:
        raise RuntimeError(f"{len(outputs)} of {clients} results; errors: {failed[:2]}")
    made = sum(len(out.generated_tokens) for out in outputs.values())
    first = min(out.created_time for out in outputs.values())
    last = max(out.lifespan[1] for out in outputs.values())
    elapsed = last - first if last > first else wall
    return [Row(name, f"{clients} concurrent: transformers generate_batch", made / elapsed, "tok/s",
                f"aggregate; {made} tokens in {elapsed:.1f} s ({wall:.1f} s with the manager's start and stop)")]


def bench_model(bench: Bench, name: str, workdir: Path, device: torch.device, cfg: dict, smoke: bool) -> None:
    if time.perf_counter() - bench.started > bench.budget_s:
        bench.rows.append(Row(name, "everything", note=f"skipped: past the {bench.budget_s:.0f} s budget"))
        return
    try:
        path = write_model(name, workdir, smoke)
        lm, rows = measure_load(name, path, device)
    except Exception as exc:  # noqa: BLE001 - the other model still runs
        traceback.print_exc()
        bench.rows.append(Row(name, "write and load", note=f"error: {type(exc).__name__}: {str(exc)[:160]}"))
        return
    bench.rows.extend(rows)
    never_stop(lm)
    engine = Engine(lm, prefix_cache=PrefixCache(max_entries=0))  # every request pre-fills in full, as bare does
    try:
        # Our engine and bare generate first; then what allocates on its own terms (the compiled static
        # cache's CUDA graphs, continuous batching's paged cache), so the peak below is the engine's, and a
        # failure or the time budget there costs the least.
        bench.measure(name, "decode batch 1", partial(measure_decode, name, lm, engine, cfg))
        for tokens in cfg["prompts"]:
            bench.measure(name, f"TTFT at {tokens} tokens", partial(measure_ttft, name, lm, engine, tokens))
        for clients in cfg["concurrency"]:
            bench.measure(name, f"{clients} concurrent: our engine",
                          partial(measure_engine_concurrency, name, lm, clients, cfg))
        if device.type == "cuda":
            bench.rows.append(Row(name, "peak GPU memory: load, our engine and bare generate",
                                  torch.cuda.max_memory_allocated(device) / 2**30, "GiB"))
        for clients in cfg["concurrency"]:
            bench.measure(name, f"{clients} concurrent: generate_batch",
                          partial(measure_generate_batch, name, lm, engine, clients, cfg))
        bench.measure(name, "decode batch 1: static cache", partial(measure_static, name, lm, engine, cfg))
    finally:
        engine.close()
        engine.free_memory()
        del engine, lm
        _release()


# --- output --------------------------------------------------------------------------------------

def table(rows: list[Row], title: str) -> str:
    cells = [(r.model, r.metric, "" if r.value is None else f"{r.value:,.2f}", r.unit, r.note) for r in rows]
    header = ("model", "measurement", "value", "unit", "note")
    widths = [max(len(str(c[i])) for c in [header, *cells]) for i in range(4)]
    lines = [title, ""]
    for cell in [header, *cells]:
        lines.append("  ".join(str(c).ljust(w) if i != 2 else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(cell[:4], widths, strict=True))) + "  " + cell[4])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU, so the script never rots")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--tokens", type=int, help="tokens per batch-1 reply (default 128; smoke 8)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "minicpm-gpu-bench",
                        help="where the random checkpoints are written (kept for the next run)")
    parser.add_argument("--budget-s", type=float, default=450, help="start no measurement after this many seconds")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"unknown model {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    cfg = dict(SMOKE if args.smoke else FULL)
    if args.tokens:
        cfg["tokens"] = args.tokens
    if args.smoke:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda", 0)
    else:
        parser.error("no CUDA device: run on a GPU machine, or pass --smoke for the CPU check")
    args.workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(args.budget_s)
    for name in names:
        bench_model(bench, name, args.workdir, device, cfg, args.smoke)
    import transformers

    title = (f"bench/gpu.py{' --smoke' if args.smoke else ''} on {device_name(device)}; torch {torch.__version__}, "
             f"transformers {transformers.__version__}; {time.perf_counter() - bench.started:.0f} s")
    print(table(bench.rows, title))
    if args.out:
        args.out.write_text(json.dumps({"title": title, "device": device_name(device), "smoke": args.smoke,
                                        "settings": cfg, "rows": [asdict(r) for r in bench.rows]},
                                       ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return 1 if any(r.note.startswith("error") for r in bench.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
