"""MiniCPM5-2B against MiniCPM-2B on CPU: load peak RSS and decode tokens/s, as ratios measured in one run.

    python bench/families.py [--layer-fraction 1.0] [--new-tokens 16] [--keep]

Writes a random checkpoint of each family at its published shape (MiniCPM-2B: testkit.checkpoint full
size, 40 layers, bf16 model.safetensors, 5.4 GB; MiniCPM5-2B: testkit.minicpm5 size "2b", 42 layers,
bf16 model-00000-of-00001.safetensors + index, 5.0 GB) under the temp dir, then, in a fresh process
per model, loads it through `load_model` (bf16, CPU), runs one forward pass, and generates
`--new-tokens` greedy tokens through the `Engine`. Reported per model: peak RSS over the bf16 weight
bytes, load seconds, decode tokens/s (after the first token); then the MiniCPM5 / MiniCPM-2B ratios.

`--layer-fraction F` keeps round(F x layers) layers of BOTH models (the same reduction), for a
machine where the full models are too slow; the embeddings stay full size, so the ratios then lean
towards the vocabularies (MiniCPM5's untied 130,560 x 2048 twice against MiniCPM-2B's tied
122,753 x 2304 once). The checkpoints are deleted afterwards unless `--keep`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FULL_LAYERS = {"MiniCPM-2B": 40, "MiniCPM5-2B": 42}
PROMPT = [{"role": "user", "content": "请介绍一下你自己，并说明你能做什么。"}]

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import torch
from minicpm_core.engine import Engine
from minicpm_core.loader import load_model
from minicpm_core.params import GenerationParams
path, new_tokens = sys.argv[1], int(sys.argv[2])
start = time.perf_counter()
lm = load_model(path, device="cpu", dtype="bfloat16")
seconds = time.perf_counter() - start
with torch.no_grad():
    lm.model(torch.tensor([[1, 100, 200, 300]]))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
engine = Engine(lm)
params = GenerationParams.parse({{"temperature": 0, "repetition_penalty": 1.0, "max_new_tokens": new_tokens}})
generation = engine.submit({prompt!r}, params)
generation.result()
engine.close()
stats = generation.stats
print(json.dumps({{"load_seconds": seconds, "peak": peak, "weights": lm.memory_bytes, "family": lm.family.label,
                  "tokens": stats.completion_tokens, "tokens_per_second": stats.tokens_per_second}}))
"""


def write(model: str, layers: int, root: Path) -> Path:
    path = root / f"{model}-{layers}l"
    if (path / "config.json").exists():
        return path
    print(f"writing {model} ({layers} layers) to {path} ...", flush=True)
    if model == "MiniCPM-2B":
        from testkit.checkpoint import write_checkpoint

        write_checkpoint(path, full_size=True, num_layers=layers, dtype="bfloat16")
    else:
        from testkit.minicpm5 import write_checkpoint

        write_checkpoint(path, size="2b", num_layers=layers, dtype="bfloat16")
    os.sync()  # dirty page-cache pages cannot be dropped from a mapping until written back (bench/load.py)
    return path


def measure(path: Path, new_tokens: int) -> dict:
    code = CHILD.format(root=str(ROOT), prompt=PROMPT)
    out = subprocess.run([sys.executable, "-c", code, str(path), str(new_tokens)], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer-fraction", type=float, default=1.0, help="keep this share of both models' layers")
    parser.add_argument("--new-tokens", type=int, default=16, help="greedy tokens generated per model")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoints in the temp dir")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    root = Path(tempfile.gettempdir()) / "minicpm-bench-families"
    results = {}
    try:
        for model, full in FULL_LAYERS.items():
            layers = max(1, round(full * args.layer_fraction))
            results[model] = measure(write(model, layers, root), args.new_tokens) | {"layers": layers}
            r = results[model]
            print(f"{model:<12} {r['layers']:>2} layers  {r['family']:<10} weights {r['weights'] / 1e9:5.2f} GB  "
                  f"peak RSS {r['peak'] / r['weights']:.2f}x weights  load {r['load_seconds']:6.1f} s  "
                  f"decode {r['tokens_per_second'] or 0:6.2f} tok/s ({r['tokens']} tokens)", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    five, two = results["MiniCPM5-2B"], results["MiniCPM-2B"]
    print(f"MiniCPM5-2B / MiniCPM-2B: weights {five['weights'] / two['weights']:.2f}x, "
          f"load peak RSS {five['peak'] / two['peak']:.2f}x, load time {five['load_seconds'] / two['load_seconds']:.2f}x, "
          f"decode tokens/s {five['tokens_per_second'] / two['tokens_per_second']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
