"""The first reply of a fresh process against the next one, with and without the warm-up at load.

    python bench/first_reply.py [--layers 4] [--repeats 3] [--device auto]

Writes one MiniCPM-2B-width random checkpoint (bf16, `--layers` layers, the real 122,753-row embedding),
then, in a fresh process per run, alternating: loads it with `load_model` (the warm-up on, or replaced
by a no-op), starts an Engine, and asks two different questions greedily (32 new tokens each). It
reports each run's first-reply speed (completion tokens / total seconds) over the second's: the issue
saw 11 tokens/s first and 50–117 after on a GPU, a ratio of about 0.1–0.2. Goal with the warm-up: >= 0.8.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEW_TOKENS = 32

CHILD = r"""
import json, sys
sys.path.insert(0, {root!r})
from minicpm_core import loader
from minicpm_core.engine import Engine
path, mode, device = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "cold":
    loader.warm_up = lambda model, tokenizer: None
engine = Engine(loader.load_model(path, device=device, dtype="bfloat16"))
speeds = []
for question in ("Tell me about the sea.", "What is a language model?"):
    _, stats = engine.chat([{{"role": "user", "content": question}}],
                           {{"temperature": 0, "max_new_tokens": {tokens}}})
    speeds.append(stats.completion_tokens / stats.total_seconds)
engine.close()
print(json.dumps({{"first": speeds[0], "second": speeds[1]}}))
"""


def run(path: Path, mode: str, device: str) -> dict:
    code = CHILD.format(root=str(ROOT), tokens=NEW_TOKENS)
    out = subprocess.run([sys.executable, "-c", code, str(path), mode, device], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from testkit.checkpoint import write_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        path = write_checkpoint(Path(tmp) / "ckpt", full_size=True, num_layers=args.layers)
        ratios: dict[str, list[float]] = {"warm": [], "cold": []}
        for _ in range(args.repeats):
            for mode in ("warm", "cold"):  # interleaved, so the machine's load hits both alike
                result = run(path, mode, args.device)
                ratios[mode].append(result["first"] / result["second"])
                print(f"{mode}: first {result['first']:.1f} tok/s, second {result['second']:.1f} tok/s", flush=True)
    for mode, values in ratios.items():
        print(f"warm-up {'on' if mode == 'warm' else 'off'}: first reply / second reply speed, median of {len(values)}: {statistics.median(values):.2f}"
              f" (runs: {', '.join(f'{v:.2f}' for v in values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
