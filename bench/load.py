"""Load time and peak memory of a full-size random MiniCPM-2B checkpoint, loaded as bf16 on CPU.

    python bench/load.py [--layers 40] [--formats safetensors bin] [--baseline]

Writes the checkpoints once (bf16 `model.safetensors`, 5.4 GB, and the seed's fp32 `pytorch_model.bin`,
10.9 GB) under the temp dir, then loads each in a fresh process and reports peak RSS (after one
forward pass) divided by the bf16 weight bytes. Goal: <= 1.3x for both formats. `--baseline` also
measures plain `from_pretrained` with the same Granite config, for comparison (the fp32 .bin needs
~16 GB of memory for it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import torch
path, method = sys.argv[1], sys.argv[2]
start = time.perf_counter()
if method == "ours":
    from minicpm_core.loader import load_model
    model = load_model(path, device="cpu", dtype="bfloat16").model
else:
    from transformers import GraniteForCausalLM
    from minicpm_core import families
    from pathlib import Path
    raw = families.read_config(Path(path))
    config = families.detect(Path(path), raw).transformers_config(raw)
    model = GraniteForCausalLM.from_pretrained(path, config=config, dtype=torch.bfloat16).eval()
seconds = time.perf_counter() - start
with torch.no_grad():
    model(torch.tensor([[1, 100, 200, 300]]))
weights = sum(p.numel() * 2 for p in model.parameters())
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"seconds": seconds, "peak": peak, "weights": weights}}))
"""


def checkpoint(fmt: str, layers: int) -> Path:
    from testkit.checkpoint import write_checkpoint

    path = Path(tempfile.gettempdir()) / f"minicpm-bench-full-{layers}l-{fmt}"
    if not (path / "config.json").exists():
        print(f"writing {fmt} checkpoint to {path} ...", flush=True)
        write_checkpoint(path, weights=fmt, full_size=True, num_layers=layers)
        # Dirty page-cache pages of a just-written file cannot be dropped from a mapping until
        # written back (measured: 2x instead of 1.1x); a downloaded checkpoint is long on disk.
        os.sync()
    return path


def measure(path: Path, method: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT)), str(path), method],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=40)
    parser.add_argument("--formats", nargs="+", default=["safetensors", "bin"])
    parser.add_argument("--baseline", action="store_true", help="also measure plain from_pretrained")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    methods = ["ours"] + (["from_pretrained"] if args.baseline else [])
    print("| checkpoint | loader | load s | peak RSS GB | bf16 weights GB | peak / weights |")
    print("|---|---|---|---|---|---|")
    for fmt in args.formats:
        path = checkpoint(fmt, args.layers)
        for method in methods:
            r = measure(path, method)
            print(f"| {fmt} | {method} | {r['seconds']:.1f} | {r['peak'] / 1e9:.2f} | {r['weights'] / 1e9:.2f} "
                  f"| {r['peak'] / r['weights']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
