"""What a model switch gives back: the process's resident memory after switching away from a large model,
as a share of that model's weights (minicpm_core.slot.ModelSlot, Engine.retire).

    python bench/switch.py [--layers 8]

Writes a full-width random MiniCPM-2B checkpoint with `--layers` layers (the 122,753 x 2,304 embedding
alone is 0.57 GB in bf16) and a tiny one under the temp dir, loads the large one through a ModelSlot on
CPU in bf16, answers one question, then switches to the tiny one while a page would still hold the
old engine (the script keeps a reference to it). Reports RSS before loading, after loading and after
the switch; `freed` is (loaded - after) / weight bytes. Goal: close to 1 (all of the weights).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from minicpm_core.engine import load_engine  # noqa: E402
from minicpm_core.settings import ModelSettings  # noqa: E402
from minicpm_core.slot import ModelSlot  # noqa: E402
from testkit.checkpoint import write_checkpoint  # noqa: E402

TIMEOUT_S = 600


def rss() -> int:
    return psutil.Process().memory_info().rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        large = write_checkpoint(Path(tmp) / "large", full_size=True, num_layers=args.layers)
        tiny = write_checkpoint(Path(tmp) / "tiny")
        settings = {name: ModelSettings(model=str(path), device="cpu", dtype="bfloat16")
                    for name, path in (("large", large), ("tiny", tiny))}
        before = rss()
        slot = ModelSlot(settings["large"], load_engine)
        old = slot.wait(timeout=TIMEOUT_S)
        old.chat([{"role": "user", "content": "hello"}], {"temperature": 0.0, "max_new_tokens": 8})
        loaded, weights = rss(), old.lm.memory_bytes
        record = slot.switch(settings["tiny"], "tiny")
        record.finished.wait(TIMEOUT_S)
        slot.wait(timeout=TIMEOUT_S)
        after = rss()
        print(json.dumps({"layers": args.layers, "weights_gb": round(weights / 1e9, 3),
                          "rss_before_gb": round(before / 1e9, 3), "rss_loaded_gb": round(loaded / 1e9, 3),
                          "rss_after_switch_gb": round(after / 1e9, 3), "switch": record.state,
                          "freed": round((loaded - after) / weights, 3), "old_engine_still_held": old is not None}))


if __name__ == "__main__":
    main()
