"""MiniCPM-2B checkpoints for tests, the demo and benchmarks, in OpenBMB's exact file layout.

What this writes is what `snapshot_download("OpenBMB/MiniCPM-2B-…")` leaves on disk: a config.json
whose `auto_map` points at remote code, Llama-named weights without `lm_head.weight` (it is tied), a
LLaMA-style sentencepiece `tokenizer.model` and the `<用户>…<AI>` chat template. Only the numbers
differ: the weights are random (or, for the demo, trained to answer `DEMO_QA`), and the tokenizer is
trained on the spot on a small bilingual corpus (`demo_data/corpus.txt`), so that
`<用户>`/`<AI>` are several pieces and rare characters and emoji go through byte-fallback tokens, as
with the real tokenizer.

Full-size checkpoints (MiniCPM-2B's exact shape, 5.4 GB in bf16) are generated and written one tensor
at a time, so the model is never held in memory twice.

The demo model is trained once and shipped in `minicpm_core/demo_data/model/` (about 380 KB), so
`--demo` starts without training; `python -m testkit.checkpoint minicpm_core/demo_data/model --demo`
regenerates it after `demo_data/` or the recipe below changes (tests/test_checkpoint.py says when).

This module writes checkpoints; it deliberately does not load them (that is `minicpm_core.loader`).
It is a test helper, outside the serving library: the runtime finds the shipped demo through
`minicpm_core.paths`, never through here.

    python -m testkit.checkpoint OUT_DIR [--weights safetensors|bin|sharded|sharded-bin]
                                         [--full-size] [--layers N] [--demo] [--legacy-config]
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import os
import sys
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from minicpm_core.families.minicpm2b import MINICPM_2B
from minicpm_core.paths import DEMO_DATA, DEMO_MODEL_DIR, demo_checkpoint_dir  # noqa: F401 (tests use them here)

FAMILY = MINICPM_2B  # the family whose checkpoints this module writes
DEMO_REGENERATE_COMMAND = "python -m testkit.checkpoint minicpm_core/demo_data/model --demo"
CHAT_TEMPLATE = FAMILY.fallback_chat_template  # upstream's, as its tokenizer_config.json ships it
BOS_ID, EOS_ID = 1, 2
TOKENIZER_VOCAB = 1500  # enough merges for words and common Chinese pairs; the corpus has ~450 characters

# Shapes: the tiny one is also the demo model's; the full one is MiniCPM-2B's, exactly.
TINY_SHAPE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
FULL_SHAPE = dict(hidden_size=2304, num_hidden_layers=40, num_attention_heads=36, intermediate_size=5760,
                  vocab_size=122753)
FULL_DIM_MODEL_BASE = 256
INIT_STD = 0.02

WEIGHT_FORMATS = ("safetensors", "bin", "sharded", "sharded-bin")
DEFAULT_DTYPE = {"safetensors": "bfloat16", "sharded": "bfloat16", "bin": "float32", "sharded-bin": "float32"}
MAX_SHARD_BYTES = 2 * 1024**3

# Demo training: a fixed recipe that memorises DEMO_QA in about 45 full-batch steps (~0.1 s each, plus
# the bf16 rounding checks: 15-45 s in all on a shared 2-core machine, which is why the result is shipped).
DEMO_SEED = 0
DEMO_LR = 3e-2
DEMO_WARMUP_STEPS = 10
DEMO_DECAY_STEPS = 100  # cosine decay to a tenth of DEMO_LR, then constant
DEMO_MAX_STEPS = 600
DEMO_MARGIN = 2.0  # logit gap between each answer token and the runner-up, so bf16 rounding keeps it
# Sampling at the app's defaults (temperature 0.5, top_p 0.8) keeps only the top token when it is at least
# this many nats above the log-sum-exp of all others: exp(-2m) <= 0.25 needs m >= 0.7; the rest is headroom
# for repetition_penalty (1.02) and bf16.
DEMO_SAMPLING_MARGIN = 2.0

_REMOTE_CODE_TRAP = 'raise RuntimeError("remote code was executed")\n'
_ST_DTYPES = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32"}


# --- the demo questions -------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _demo_qa() -> tuple[tuple[str, str], ...]:
    lines = (DEMO_DATA / "qa.jsonl").read_text(encoding="utf-8").splitlines()
    return tuple((row["q"], row["a"]) for row in map(json.loads, filter(str.strip, lines)))


def __getattr__(name: str) -> Any:
    # DEMO_QA is read on first use rather than at import (PEP 562).
    if name == "DEMO_QA":
        return list(_demo_qa())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- tokenizer -----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def train_tokenizer() -> bytes:
    """Train the sentencepiece model (LLaMA's settings: BPE, byte fallback, split digits) in ~0.1 s."""
    import sentencepiece as spm

    lines = [line for line in (DEMO_DATA / "corpus.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="bpe", vocab_size=TOKENIZER_VOCAB,
        byte_fallback=True, split_digits=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=True, allow_whitespace_only_pieces=True,
        unk_id=0, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=-1, character_coverage=1.0,
        max_sentencepiece_length=16, num_threads=1, minloglevel=2,
    )
    return model.getvalue()


def _added_token(content: str) -> dict[str, Any]:
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True,
            "rstrip": False, "single_word": False}


def write_tokenizer(out_dir: str | os.PathLike, *, tokenizer_json: bool = False) -> int:
    """Write tokenizer.model, tokenizer_config.json and special_tokens_map.json; return the vocab size."""
    out = Path(out_dir)
    proto = train_tokenizer()
    (out / "tokenizer.model").write_bytes(proto)
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": _added_token("<s>"),
        "clean_up_tokenization_spaces": False,
        "eos_token": _added_token("</s>"),
        "legacy": True,
        "model_max_length": 1000000000000000019884624838656,
        "pad_token": None,
        "sp_model_kwargs": {},
        "spaces_between_special_tokens": False,
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": _added_token("<unk>"),
        "use_default_system_prompt": False,
        "chat_template": CHAT_TEMPLATE,
    }
    write_json(out / "tokenizer_config.json", config)
    write_json(out / "special_tokens_map.json", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    if tokenizer_json:
        # The class itself, not AutoTokenizer: it never looks at config.json's auto_map.
        from transformers import LlamaTokenizer

        LlamaTokenizer.from_pretrained(out).backend_tokenizer.save(str(out / "tokenizer.json"))
    return _vocab_size(proto)


def _vocab_size(proto: bytes) -> int:
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_proto=proto).vocab_size()


# --- config --------------------------------------------------------------------------------------

def minicpm_config(*, hidden_size: int, num_hidden_layers: int, num_attention_heads: int,
                   intermediate_size: int, vocab_size: int, dim_model_base: int,
                   torch_dtype: str = "bfloat16", legacy_config: bool = False) -> dict[str, Any]:
    """config.json as OpenBMB publishes it (keys in their order); `legacy_config` is the first fp32 upload."""
    config: dict[str, Any] = {
        "_name_or_path": "openbmb/CPM-2B",
        "architectures": ["MiniCPMForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_minicpm.MiniCPMConfig",
            "AutoModel": "modeling_minicpm.MiniCPMModel",
            "AutoModelForCausalLM": "modeling_minicpm.MiniCPMForCausalLM",
            "AutoModelForSeq2SeqLM": "modeling_minicpm.MiniCPMForCausalLM",
            "AutoModelForSequenceClassification": "modeling_minicpm.MiniCPMForSequenceClassification",
        },
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "hidden_act": "silu",
        "hidden_size": hidden_size,
        "initializer_range": 0.1,
        "intermediate_size": intermediate_size,
        "max_position_embeddings": 2048 if legacy_config else FAMILY.context_length,
        "model_type": "minicpm",
        "num_attention_heads": num_attention_heads,
        "num_hidden_layers": num_hidden_layers,
        "num_key_value_heads": num_attention_heads,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "torch_dtype": torch_dtype,
        "transformers_version": "4.36.0",
        "use_cache": True,
        "vocab_size": vocab_size,
        "scale_emb": 12,
        "dim_model_base": dim_model_base,
        "scale_depth": 1.4,
    }
    if legacy_config:
        del config["model_type"]
    return config


def make_config(*, full_size: bool = False, num_layers: int | None = None, vocab_size: int = TOKENIZER_VOCAB,
                torch_dtype: str = "bfloat16", legacy_config: bool = False) -> dict[str, Any]:
    """The config.json of a tiny (hidden 64, 2 layers) or full-size (MiniCPM-2B's exact shape) checkpoint.

    The full-size vocabulary stays 122,753 although the tokenizer is small: ids beyond it never occur.
    """
    if full_size:
        shape = dict(FULL_SHAPE, dim_model_base=FULL_DIM_MODEL_BASE)
    else:
        shape = dict(TINY_SHAPE, vocab_size=vocab_size, dim_model_base=TINY_SHAPE["hidden_size"] // 4)
    if num_layers is not None:
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        shape["num_hidden_layers"] = num_layers
    return minicpm_config(**shape, torch_dtype=torch_dtype, legacy_config=legacy_config)


def _generation_config() -> dict[str, Any]:
    return {"bos_token_id": BOS_ID, "do_sample": True, "eos_token_id": EOS_ID, "temperature": 0.8,
            "top_p": 0.8, "transformers_version": "4.36.0"}


# --- weights -------------------------------------------------------------------------------------

def tensor_shapes(config: dict[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
    """State-dict names and shapes of a Llama-layout decoder, in upstream order.

    Serves both families' factories: MiniCPM-2B (tied embedding, so no lm_head; head_dim is
    hidden / heads) and MiniCPM5 (an explicit head_dim, untied, so lm_head comes last)."""
    h, ff, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    head_dim = config.get("head_dim") or h // config["num_attention_heads"]
    q, kv = config["num_attention_heads"] * head_dim, config["num_key_value_heads"] * head_dim
    shapes: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (config["vocab_size"], h))]
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes += [
            (p + "self_attn.q_proj.weight", (q, h)),
            (p + "self_attn.k_proj.weight", (kv, h)),
            (p + "self_attn.v_proj.weight", (kv, h)),
            (p + "self_attn.o_proj.weight", (h, q)),
            (p + "mlp.gate_proj.weight", (ff, h)),
            (p + "mlp.up_proj.weight", (ff, h)),
            (p + "mlp.down_proj.weight", (h, ff)),
            (p + "input_layernorm.weight", (h,)),
            (p + "post_attention_layernorm.weight", (h,)),
        ]
    shapes.append(("model.norm.weight", (h,)))
    if not config.get("tie_word_embeddings", True):
        shapes.append(("lm_head.weight", (config["vocab_size"], h)))
    return shapes


def random_tensor(name: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    if name.endswith("norm.weight"):
        return torch.ones(shape)
    # One generator per tensor, seeded from its name: the same tensor whatever the layer count or order.
    generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    return torch.randn(shape, generator=generator).mul_(INIT_STD)


def _plan_shards(shapes: list[tuple[str, tuple[int, ...]]], itemsize: int) -> list[list[tuple[str, tuple[int, ...]]]]:
    sizes = [math.prod(shape) * itemsize for _, shape in shapes]
    total = sum(sizes)
    count = max(2, math.ceil(total / MAX_SHARD_BYTES))
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[] for _ in range(count)]
    start = 0
    for item, size in zip(shapes, sizes):
        shards[min(count - 1, start * count // total)].append(item)
        start += size
    return [shard for shard in shards if shard]


def write_safetensors(path: Path, shapes: list[tuple[str, tuple[int, ...]]],
                       make: Callable[[str, tuple[int, ...]], torch.Tensor], dtype: torch.dtype) -> int:
    """Stream a .safetensors file tensor by tensor (the header is known from the shapes alone)."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in shapes:
        size = math.prod(shape) * dtype.itemsize
        header[name] = {"dtype": _ST_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for name, shape in shapes:
            tensor = make(name, shape).to(dtype).contiguous()
            assert tuple(tensor.shape) == shape, (name, tensor.shape, shape)
            f.write(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
            del tensor
    return offset


def _write_bin(path: Path, shapes: list[tuple[str, tuple[int, ...]]],
               make: Callable[[str, tuple[int, ...]], torch.Tensor], dtype: torch.dtype) -> int:
    # torch.save needs the whole dict; building it one tensor at a time keeps the peak at one copy.
    state = {name: make(name, shape).to(dtype).contiguous() for name, shape in shapes}
    torch.save(state, path)
    return sum(t.numel() * t.element_size() for t in state.values())


def write_weights(out_dir: str | os.PathLike, config: dict[str, Any],
                  make: Callable[[str, tuple[int, ...]], torch.Tensor], *, weights: str, dtype: torch.dtype) -> None:
    """Write the weights for `config` in one of WEIGHT_FORMATS; `make(name, shape)` produces each tensor."""
    if weights not in WEIGHT_FORMATS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_FORMATS)}, got {weights!r}")
    out = Path(out_dir)
    shapes = tensor_shapes(config)
    if weights.endswith("bin"):
        writer, stem, ext = _write_bin, "pytorch_model", "bin"
    else:
        writer, stem, ext = write_safetensors, "model", "safetensors"
    if not weights.startswith("sharded"):
        writer(out / f"{stem}.{ext}", shapes, make, dtype)
        return
    shards = _plan_shards(shapes, dtype.itemsize)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards, 1):
        filename = f"{stem}-{i:05d}-of-{len(shards):05d}.{ext}"
        total += writer(out / filename, shard, make, dtype)
        weight_map.update({name: filename for name, _ in shard})
    write_json(out / f"{stem}.{ext}.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})


# --- writing a checkpoint ------------------------------------------------------------------------

def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _write_layout(out: Path, config: dict[str, Any], make: Callable[[str, tuple[int, ...]], torch.Tensor], *,
                  weights: str, dtype: torch.dtype, remote_code_trap: bool) -> None:
    write_json(out / "config.json", config)
    write_json(out / "generation_config.json", _generation_config())
    if remote_code_trap:
        for name in ("configuration_minicpm.py", "modeling_minicpm.py"):
            (out / name).write_text(_REMOTE_CODE_TRAP, encoding="utf-8")
    write_weights(out, config, make, weights=weights, dtype=dtype)


def write_checkpoint(out_dir: str | os.PathLike, *, weights: str = "safetensors", full_size: bool = False,
                     num_layers: int | None = None, legacy_config: bool = False, remote_code_trap: bool = False,
                     tokenizer_json: bool = False, seed: int = 0, dtype: str | None = None) -> Path:
    """Write a random MiniCPM-2B checkpoint (tiny by default) in the upstream layout; return its directory.

    `weights`: "safetensors" (model.safetensors, bf16), "bin" (pytorch_model.bin, fp32, like the seed's
    -sft-fp32), "sharded" (model-0000i-of-0000N.safetensors + index) or "sharded-bin". `dtype`
    ("bfloat16", "float16", "float32") overrides the format's default. `remote_code_trap` adds
    configuration/modeling_minicpm.py files that raise on import.
    """
    if weights not in WEIGHT_FORMATS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_FORMATS)}, got {weights!r}")
    dtype_name = dtype or DEFAULT_DTYPE[weights]
    torch_dtype = getattr(torch, dtype_name)
    if torch_dtype not in _ST_DTYPES:
        raise ValueError(f"dtype must be bfloat16, float16 or float32, got {dtype_name!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = write_tokenizer(out, tokenizer_json=tokenizer_json)
    config = make_config(full_size=full_size, num_layers=num_layers, vocab_size=vocab,
                         torch_dtype=dtype_name, legacy_config=legacy_config)
    _write_layout(out, config, lambda name, shape: random_tensor(name, shape, seed),
                  weights=weights, dtype=torch_dtype, remote_code_trap=remote_code_trap)
    return out


# --- the demo model ------------------------------------------------------------------------------

def _demo_batches(vocab_file: bytes, buckets: int = 3) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """`<s><用户>{q}<AI>{a}</s>` sequences in length buckets: (input ids, answer mask, answer targets)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=vocab_file)
    sequences = []
    for question, answer in _demo_qa():
        # Tokenized as one string, as a chat history is: the answer gets no dummy-prefix "▁".
        prompt_text = "<用户>" + question.strip() + "<AI>"
        prompt, full = sp.encode(prompt_text), sp.encode(prompt_text + answer.strip())
        if full[:len(prompt)] != prompt:
            raise ValueError(f"demo answer {answer[:20]!r}… merges with its prompt's tokens; reword it")
        sequences.append(([BOS_ID] + prompt, full[len(prompt):] + [EOS_ID]))
    sequences.sort(key=lambda pa: len(pa[0]) + len(pa[1]))
    # Buckets of similar length: padding everything to the longest answer would double the work.
    batches = []
    for b in range(buckets):
        chunk = sequences[b * len(sequences) // buckets:(b + 1) * len(sequences) // buckets]
        length = max(len(p) + len(a) for p, a in chunk)
        ids = torch.zeros(len(chunk), length, dtype=torch.long)
        labels = torch.full((len(chunk), length), -100)
        for row, (prompt, answer) in enumerate(chunk):
            ids[row, :len(prompt) + len(answer)] = torch.tensor(prompt + answer)
            labels[row, len(prompt) - 1:len(prompt) + len(answer) - 1] = torch.tensor(answer)
        mask = labels != -100  # right padding and causal attention: padding never affects answer positions
        batches.append((ids, mask, labels[mask]))
    return batches


def _answer_logits(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # lm_head only where an answer token is predicted: most positions are prompt or padding.
    hidden = model.model(input_ids=ids).last_hidden_state[mask]
    return (model.lm_head(hidden) / model.config.logits_scaling).float()


def min_margin(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Smallest gap between the target's logit and the best other logit (> 0 iff greedy reproduces it)."""
    target = logits.gather(1, targets[:, None])[:, 0]
    others = logits.scatter(1, targets[:, None], float("-inf")).max(dim=1).values
    return (target - others).min().item()


def min_sampling_margin(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Smallest gap between the target's logit and the log-sum-exp of all other logits: above ~0.7, sampling
    at temperature 0.5 and top_p 0.8 can only draw the target (see DEMO_SAMPLING_MARGIN)."""
    target = logits.gather(1, targets[:, None])[:, 0]
    others = logits.scatter(1, targets[:, None], float("-inf")).logsumexp(dim=1)
    return (target - others).min().item()


@torch.no_grad()
def _survives_rounding(model: Any, batches: list, dtype: torch.dtype) -> bool:
    """Whether greedy decoding still reproduces every answer once the weights are stored in `dtype`,
    both when computed in fp32 (with a margin) and when computed in `dtype` itself (right argmax)."""
    import copy

    rounded = copy.deepcopy(model)
    for p in rounded.parameters():
        p.copy_(p.to(dtype).float())
    if min(min_margin(_answer_logits(rounded, ids, mask), t) for ids, mask, t in batches) < DEMO_MARGIN / 2:
        return False
    rounded.to(dtype)
    return min(min_margin(_answer_logits(rounded, ids, mask), t) for ids, mask, t in batches) > 0


def demo_lr_factor(step: int) -> float:
    warmup = min(1.0, (step + 1) / DEMO_WARMUP_STEPS)
    return warmup * max(0.1, 0.5 * (1 + math.cos(math.pi * min(step, DEMO_DECAY_STEPS) / DEMO_DECAY_STEPS)))


@functools.lru_cache(maxsize=None)
def _train_demo() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Train the tiny model on DEMO_QA until greedy decoding reproduces every answer, in fp32 and once
    stored and computed in bf16, and sampling at the app's defaults can draw nothing else; return
    (config, fp32 state dict without lm_head)."""
    proto = train_tokenizer()
    vocab = _vocab_size(proto)
    config = make_config(vocab_size=vocab)
    # A smaller logits divisor (2 rather than 4) lets the tied embedding reach confident logits in
    # about two-thirds of the steps; it is still not 1, so a loader that forgets it still fails.
    config["dim_model_base"] = config["hidden_size"] // 2
    batches = _demo_batches(proto)
    answer_tokens = sum(t.numel() for _, _, t in batches)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(DEMO_SEED)
        model = FAMILY.model_class(FAMILY.transformers_config(config)).float()
    optimizer = torch.optim.AdamW(model.parameters(), lr=DEMO_LR, betas=(0.9, 0.9), weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, demo_lr_factor)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: extra threads only add contention on a busy machine
    try:
        for _ in range(DEMO_MAX_STEPS):
            optimizer.zero_grad()
            margin = sampling_margin = math.inf
            for ids, mask, targets in batches:
                logits = _answer_logits(model, ids, mask)
                loss = torch.nn.functional.cross_entropy(logits, targets, reduction="sum") / answer_tokens
                loss.backward()
                margin = min(margin, min_margin(logits.detach(), targets))
                sampling_margin = min(sampling_margin, min_sampling_margin(logits.detach(), targets))
            if margin > DEMO_MARGIN and sampling_margin > DEMO_SAMPLING_MARGIN \
                    and _survives_rounding(model, batches, torch.bfloat16):
                break
            optimizer.step()
            schedule.step()
        else:
            raise RuntimeError(f"demo training did not reproduce every answer in {DEMO_MAX_STEPS} steps")
    finally:
        torch.set_num_threads(threads)
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    return config, state


def write_demo_checkpoint(out_dir: str | os.PathLike, *, weights: str = "safetensors") -> Path:
    """Write the demo checkpoint: the tiny model trained (deterministic) to answer DEMO_QA.

    Greedy decoding of `<s><用户>{q}<AI>` reproduces each answer exactly, followed by `</s>`.
    """
    if weights not in WEIGHT_FORMATS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_FORMATS)}, got {weights!r}")
    config, state = _train_demo()
    config = dict(config, torch_dtype=DEFAULT_DTYPE[weights])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_tokenizer(out)
    _write_layout(out, config, lambda name, shape: state[name], weights=weights,
                  dtype=getattr(torch, DEFAULT_DTYPE[weights]), remote_code_trap=False)
    return out


# --- CLI -----------------------------------------------------------------------------------------

def _describe(out: Path) -> Iterable[str]:
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    yield (f"Wrote {out}: MiniCPM-2B layout, hidden {config['hidden_size']}, {config['num_hidden_layers']} layers, "
           f"vocab {config['vocab_size']}, {config['torch_dtype']}")
    for path in sorted(out.iterdir()):
        yield f"  {path.name:<40} {path.stat().st_size:>15,} bytes"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testkit.checkpoint", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--weights", choices=WEIGHT_FORMATS, default="safetensors")
    parser.add_argument("--full-size", action="store_true", help="MiniCPM-2B's exact shape (5.4 GB in bf16)")
    parser.add_argument("--layers", type=int, help="override the number of layers (e.g. full width, 4 layers)")
    parser.add_argument("--demo", action="store_true", help="the tiny model trained to answer the demo questions")
    parser.add_argument("--legacy-config", action="store_true", help="config.json of the first fp32 upload")
    parser.add_argument("--remote-code-trap", action="store_true", help="add *_minicpm.py files that raise on import")
    parser.add_argument("--tokenizer-json", action="store_true", help="also write tokenizer.json")
    parser.add_argument("--dtype", choices=("bfloat16", "float16", "float32"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.demo:
        if args.full_size or args.layers or args.legacy_config or args.remote_code_trap or args.dtype \
                or args.tokenizer_json or args.seed:
            parser.error("--demo takes only --weights")
        out = write_demo_checkpoint(args.out_dir, weights=args.weights)
    else:
        out = write_checkpoint(args.out_dir, weights=args.weights, full_size=args.full_size, num_layers=args.layers,
                               legacy_config=args.legacy_config, remote_code_trap=args.remote_code_trap,
                               tokenizer_json=args.tokenizer_json, seed=args.seed, dtype=args.dtype)
    print("\n".join(_describe(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
