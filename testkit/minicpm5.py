"""MiniCPM5 checkpoints for tests, the demo and benchmarks, in OpenBMB's file layout.

What this writes is what `snapshot_download("OpenBMB/MiniCPM5-…")` leaves on disk, as far as it is
known (sources below): a plain `LlamaForCausalLM` config.json (GQA, `head_dim` given explicitly,
untied embeddings, rope_theta 5e6, 131,072 positions), the weights as `model-00000-of-00001.safetensors`
plus `model.safetensors.index.json`, a `tokenizer.json`, a `generation_config.json` (eos `[1, <|im_end|>]`,
the recommended sampling) and a ChatML `chat_template.jinja` that takes `enable_thinking` and `tools`.
The tokenizer follows the real one's conventions: `<s>` = 0 is the BOS and the tokenizer adds it by
default although the template writes it too (so `tokenizer(rendered)` starts `[0, 0]`: the trap this
layout exists to catch), pad = 1, `<think>` = 8 and `</think>` = 9 single added tokens, the tool tags
(`<tools>`, `<tool_response>` and their closers) special tokens. Only the numbers differ: the weights are
random (or, for the demo, trained to answer `demo_qa()` with and without thinking, and to run the
one-tool agent loop of `demo_tool()`) and the tokenizer is a byte-level BPE trained on the spot on the
project's bilingual corpus. tests/minicpm5_facts.py holds the facts; tests/test_minicpm5_facts.py fails
where this factory drifts from them.

Sources (2026-12), none of them OpenBMB's files themselves, which cannot be downloaded here:
- the model cards: "standard LlamaForCausalLM", 16 query / 2 KV heads, 131,072 context, 1B: 24
  layers and 1,080,632,832 parameters (679,552,512 without the embeddings);
- third-party ports that pin OpenBMB's files: 1B hidden 1536, intermediate 4608, head_dim 128,
  vocab 130,560, rms_norm_eps 1e-6, rope_theta 5e6, tie_word_embeddings false, files
  `model-00000-of-00001.safetensors` + index + `tokenizer.json` + `chat_template.jinja`; 2B: 42 layers,
  hidden 2048, intermediate 6144, bos 0, pad 1, eos [1, <|im_end|>], 5,033,512,960 bytes of bf16 weights.
  Both parameter counts follow from those shapes with untied embeddings, which is how they are checked.
- the template: BOS first; the tools as JSON inside `<tools></tools>` in the system turn; the
  generation prompt `<|im_start|>assistant\\n` followed by `<think>\\n` when enable_thinking is true, by
  the empty block `<think>\\n\\n</think>\\n\\n` when it is false, and by nothing when it is not given
  (the model chooses); calls written `<function name="f"><param name="p">value</param></function>`
  (minicpm_core.tools), results rendered as `<tool_response>`. Earlier reasoning: the 2B template
  renders an earlier assistant turn's `reasoning_content` when it is sent, else an empty block; the 1B
  template only for turns after the last user question (`CHAT_TEMPLATES`). Unconfirmed (listed in
  tests/minicpm5_facts.py): the template's exact wording, whether the think tags are flagged special,
  which tool tags are tokens, the tokenizer class.

The demo model is trained once and shipped in `minicpm_core/demo_data/minicpm5/model/` (< 1 MB);
`python -m testkit.minicpm5 minicpm_core/demo_data/minicpm5/model --demo` regenerates it after
`qa.jsonl` or the recipe below changes (tests/test_minicpm5.py says when it is due).

    python -m testkit.minicpm5 OUT_DIR [--size tiny|1b|2b] [--layers N] [--seed N] [--demo]
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from minicpm_core.reasoning import THINK_CLOSE, THINK_OPEN
from minicpm_core.tools import format_call

# The pieces both families' factories share.
from testkit.checkpoint import (
    DEMO_DATA,
    demo_lr_factor,
    min_margin,
    random_tensor,
    tensor_shapes,
    write_json,
    write_safetensors,
)

DEMO_DIR = DEMO_DATA / "minicpm5"
DEMO_TOOL_FILE = DEMO_DIR / "tool_demo.json"  # the one tool the demo calls, and the agent loop it is trained on
DEMO_QA_FILE = DEMO_DIR / "qa.jsonl"  # the demo's questions, read by the app too (examples in the empty chat)
DEMO_MODEL_DIR = DEMO_DIR / "model"  # the shipped demo checkpoint, written by write_demo_checkpoint()
DEMO_REGENERATE_COMMAND = "python -m testkit.minicpm5 minicpm_core/demo_data/minicpm5/model --demo"

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
TOKENIZER_VOCAB = 1200  # BPE pieces before the added tokens; the corpus has ~450 distinct characters

TOOLS_OPEN, TOOLS_CLOSE = "<tools>", "</tools>"
RESPONSE_OPEN, RESPONSE_CLOSE = "<tool_response>", "</tool_response>"
TOOL_TAGS = (TOOLS_OPEN, TOOLS_CLOSE, RESPONSE_OPEN, RESPONSE_CLOSE)  # special tokens, as upstream
RESERVED = "<reserved_7>"  # fills id 7, so that <think> and </think> are 8 and 9 as upstream
# ids 0-9 in order: upstream's layout where it is known (bos 0, pad 1, <think> 8, </think> 9)
LOW_IDS = (BOS, EOS, UNK, *TOOL_TAGS, RESERVED, THINK_OPEN, THINK_CLOSE)

# The template, in two variants that differ only in which earlier reasoning they render:
# 2B: an earlier assistant turn's `reasoning_content` whenever the client sends it (else the empty
# block); 1B: only for assistant turns after the last user question (Qwen3's rule).
_TEMPLATE = """\
{{- bos_token }}
{%- macro value(v) %}{% if v is string %}{% if '<' in v or '&' in v or '\\n' in v %}<![CDATA[{{ v }}]]>\
{% else %}{{ v }}{% endif %}{% else %}{{ v | tojson }}{% endif %}{% endmacro %}
{%- set system = messages[0].content if messages and messages[0].role == 'system' else none %}
{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if system %}{{- system + '\\n\\n' }}{%- endif %}
    {{- '# Tools\\n\\nYou may call these functions:\\n<tools>' }}
    {%- for tool in tools %}{{- '\\n' + (tool.function if tool.function is defined else tool) | tojson }}{%- endfor %}
    {{- '\\n</tools>\\n\\nTo call one, write ' }}
    {{- '<function name="NAME"><param name="PARAM">VALUE</param></function>.<|im_end|>\\n' }}
{%- elif system is not none %}
    {{- '<|im_start|>system\\n' + system + '<|im_end|>\\n' }}
{%- endif %}
{%- set ns = namespace(last_query=-1) %}
{%- for message in messages %}
    {%- if message.role == 'user' %}
        {%- set ns.last_query = loop.index0 %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- elif message.role == 'assistant' %}
        {%- set content = message.content or '' %}
        {%- set reasoning = message.reasoning_content or '' %}
        {%- if '</think>' in content %}
            {%- set reasoning = content.split('</think>')[0].split('<think>')[-1] %}
            {%- set content = content.split('</think>')[-1] %}
        {%- endif %}
        {%- if KEEPS_REASONING and reasoning.strip('\\n') %}
            {{- '<|im_start|>assistant\\n<think>\\n' + reasoning.strip('\\n') + '\\n</think>\\n\\n' }}
        {%- else %}
            {{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' }}
        {%- endif %}
        {{- content.lstrip('\\n') }}
        {%- for call in message.tool_calls or [] %}
            {%- set call = call.function if call.function is defined else call %}
            {%- if loop.first and content.strip() %}{{- '\\n' }}{%- endif %}
            {{- '<function name="' + call.name + '">' }}
            {%- for key, v in (call.arguments or {}).items() %}
                {{- '<param name="' + key + '">' + value(v) + '</param>' }}
            {%- endfor %}
            {{- '</function>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == 'tool' %}
        {%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}
        {{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined %}
        {%- if enable_thinking %}
            {{- '<think>\\n' }}
        {%- else %}
            {{- '<think>\\n\\n</think>\\n\\n' }}
        {%- endif %}
    {%- endif %}
{%- endif %}
"""
CHAT_TEMPLATES = {
    "2b": _TEMPLATE.replace("KEEPS_REASONING", "true"),
    "1b": _TEMPLATE.replace("KEEPS_REASONING", "loop.index0 > ns.last_query"),
}
CHAT_TEMPLATE = CHAT_TEMPLATES["2b"]  # the tiny checkpoint's and the demo's

# Shapes. TINY keeps what matters of the real ones: 16 query heads on 2 KV heads, and a head_dim
# that is not hidden_size / heads (as in the 1B), so a loader that derives it fails.
TINY_SHAPE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=16, num_key_value_heads=2,
                  head_dim=8, intermediate_size=128)
FULL_SHAPES = {
    "1b": dict(hidden_size=1536, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=2,
               head_dim=128, intermediate_size=4608, vocab_size=130560),
    "2b": dict(hidden_size=2048, num_hidden_layers=42, num_attention_heads=16, num_key_value_heads=2,
               head_dim=128, intermediate_size=6144, vocab_size=130560),
}
SIZES = ("tiny", *FULL_SHAPES)
CONTEXT_LENGTH = 131072
SHARD_NAME = "model-00000-of-00001.safetensors"  # sic: OpenBMB's one shard is numbered from 0
INDEX_NAME = "model.safetensors.index.json"
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}

# Demo training: like the MiniCPM-2B demo's recipe (checkpoint.py), full batch until every answer
# token leads the runner-up by DEMO_MARGIN, which survives bf16 rounding.
DEMO_SEED = 0
DEMO_LR = 1e-2
DEMO_MAX_STEPS = 600
DEMO_MARGIN = 2.0
THINKING_MODES = (True, False, None)  # enable_thinking on, off, and not given (the model chooses)


# --- the demo questions -------------------------------------------------------------------------

@functools.cache
def _demo_rows() -> tuple[tuple[str, str, str], ...]:
    lines = DEMO_QA_FILE.read_text(encoding="utf-8").splitlines()
    return tuple((row["q"], row["think"], row["a"]) for row in map(json.loads, filter(str.strip, lines)))


def demo_qa() -> list[tuple[str, str, str]]:
    """(question, reasoning, answer) for each demo question."""
    return list(_demo_rows())


def demo_reply(reasoning: str, answer: str, enable_thinking: bool | None) -> str:
    """What the demo model writes after the generation prompt (the stop token `<|im_end|>` aside)."""
    if enable_thinking is False:
        return answer
    block = f"{reasoning}\n{THINK_CLOSE}\n\n{answer}"
    return block if enable_thinking else f"{THINK_OPEN}\n{block}"


@functools.cache
def _demo_tool() -> dict[str, Any]:
    return json.loads(DEMO_TOOL_FILE.read_text(encoding="utf-8"))


def demo_tool() -> dict[str, Any]:
    """The demo's agent loop: its tool (OpenAI's shape), question, call, the tool's result, answer."""
    return copy.deepcopy(_demo_tool())


def demo_tool_turns() -> list[tuple[list[dict[str, Any]], str]]:
    """(messages, reply) of the agent loop the demo is trained on, tools given and thinking left to the
    model: the question → a call; the question, the call (its reasoning sent back or not, as clients
    do either) and the tool's result → the answer."""
    demo = _demo_tool()
    question = {"role": "user", "content": demo["question"]}
    call = format_call(demo["tool"]["function"]["name"], demo["arguments"])
    tool_call = {"id": "call_0", "type": "function",
                 "function": {"name": demo["tool"]["function"]["name"], "arguments": demo["arguments"]}}
    turns = [([question], f"{THINK_OPEN}\n{demo['call_reasoning']}\n{THINK_CLOSE}\n\n{call}")]
    for sent_back in ({}, {"reasoning_content": demo["call_reasoning"]}):
        history = [question, {"role": "assistant", "content": "", "tool_calls": [tool_call], **sent_back},
                   {"role": "tool", "tool_call_id": "call_0", "content": demo["result"]}]
        turns.append((history, demo_reply(demo["answer_reasoning"], demo["answer"], None)))
    return turns


def _demo_tool_texts() -> tuple[str, ...]:
    demo = _demo_tool()
    return (json.dumps(demo["tool"]["function"]), demo["question"], demo["call_reasoning"], demo["result"],
            format_call(demo["tool"]["function"]["name"], demo["arguments"]), demo["answer_reasoning"],
            demo["answer"])


# --- tokenizer -----------------------------------------------------------------------------------

@functools.cache
def train_tokenizer() -> str:
    """Train the byte-level BPE on the corpus and the demo texts (~0.1 s); return tokenizer.json.

    Upstream's conventions: `<s>`=0 (BOS, added by the tokenizer by default, as upstream's does,
    although the template writes one too), `</s>`=1 (pad), `<think>`=8 and `</think>`=9 single
    added tokens, the tool tags special tokens. The ChatML tags are special (hidden by
    skip_special_tokens); the think tags are added but not special, so decoded text keeps them for
    the reasoning splitter (whether upstream flags them special is unconfirmed).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    corpus = (DEMO_DATA / "corpus.txt").read_text(encoding="utf-8").splitlines()
    corpus += [text for row in _demo_rows() for text in row] + list(_demo_tool_texts())
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TOKENIZER_VOCAB, special_tokens=list(LOW_IDS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(filter(str.strip, corpus), trainer)
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (IM_START, IM_END)])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, LOW_IDS.index(BOS))])
    spec = json.loads(tokenizer.to_str())
    for token in spec["added_tokens"]:
        if token["content"] in (THINK_OPEN, THINK_CLOSE):
            token["special"] = False  # kept by skip_special_tokens: the reasoning splitter reads them
    return json.dumps(spec, ensure_ascii=False, indent=2)


def _token_id(tokenizer_json: str, token: str) -> int:
    spec = json.loads(tokenizer_json)
    added = {t["content"]: t["id"] for t in spec["added_tokens"]}
    return added[token] if token in added else spec["model"]["vocab"][token]


def write_tokenizer(out_dir: str | os.PathLike, template: str = "2b") -> int:
    """Write tokenizer.json, tokenizer_config.json and chat_template.jinja (the 2B's or the 1B's
    template, `template`); return the vocab size."""
    out = Path(out_dir)
    spec = train_tokenizer()
    (out / "tokenizer.json").write_text(spec + "\n", encoding="utf-8")
    write_json(out / "tokenizer_config.json", {
        "add_bos_token": True,  # as upstream: tokenizer(rendered) gives two BOS, so the template's text is
                                # encoded without special tokens (apply_chat_template(tokenize=True))
        "add_eos_token": False,
        "bos_token": BOS,
        "clean_up_tokenization_spaces": False,
        "eos_token": IM_END,
        "model_max_length": CONTEXT_LENGTH,
        "pad_token": EOS,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": UNK,
    })
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATES[template], encoding="utf-8")
    return tokenizer_vocab_size()


# --- config --------------------------------------------------------------------------------------

def make_config(*, size: str = "tiny", num_layers: int | None = None, vocab_size: int | None = None,
                torch_dtype: str = "bfloat16") -> dict[str, Any]:
    """config.json of a tiny or full-size (MiniCPM5-1B's / 2B's shape) checkpoint.

    The full-size vocabulary stays 130,560 although the tokenizer is small: ids beyond it never occur.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    im_end = _token_id(train_tokenizer(), IM_END)
    shape = dict(FULL_SHAPES[size]) if size in FULL_SHAPES else dict(TINY_SHAPE, vocab_size=vocab_size)
    if shape["vocab_size"] is None:
        shape["vocab_size"] = tokenizer_vocab_size()
    if num_layers is not None:
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        shape["num_hidden_layers"] = num_layers
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "eos_token_id": [1, im_end],
        "head_dim": shape["head_dim"],
        "hidden_act": "silu",
        "hidden_size": shape["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": shape["intermediate_size"],
        "max_position_embeddings": CONTEXT_LENGTH,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": shape["num_attention_heads"],
        "num_hidden_layers": shape["num_hidden_layers"],
        "num_key_value_heads": shape["num_key_value_heads"],
        "pad_token_id": 1,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 5000000.0,
        "tie_word_embeddings": False,
        "torch_dtype": torch_dtype,
        "use_cache": True,
        "vocab_size": shape["vocab_size"],
    }


def tokenizer_vocab_size() -> int:
    """Ids the trained tokenizer uses (pieces and added tokens): the tiny checkpoint's vocab_size."""
    spec = json.loads(train_tokenizer())
    return 1 + max([*spec["model"]["vocab"].values(), *(t["id"] for t in spec["added_tokens"])])


def _generation_config(config: dict[str, Any]) -> dict[str, Any]:
    return {"bos_token_id": config["bos_token_id"], "do_sample": True, "eos_token_id": config["eos_token_id"],
            "pad_token_id": config["pad_token_id"], "temperature": 1.0, "top_p": 0.95}


# --- weights -------------------------------------------------------------------------------------

def write_weights(out_dir: str | os.PathLike, config: dict[str, Any],
                  make: Callable[[str, tuple[int, ...]], torch.Tensor], dtype: torch.dtype) -> None:
    """The one shard and its index, streamed tensor by tensor (a full-size model is never held twice)."""
    out = Path(out_dir)
    shapes = tensor_shapes(config)
    total = write_safetensors(out / SHARD_NAME, shapes, make, dtype)
    write_json(out / INDEX_NAME, {"metadata": {"total_size": total},
                                   "weight_map": {name: SHARD_NAME for name, _ in shapes}})


def _write_layout(out: Path, config: dict[str, Any], make: Callable[[str, tuple[int, ...]], torch.Tensor],
                  dtype: torch.dtype) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    write_tokenizer(out, "1b" if config["num_hidden_layers"] == FULL_SHAPES["1b"]["num_hidden_layers"]
                    and config["hidden_size"] == FULL_SHAPES["1b"]["hidden_size"] else "2b")
    write_json(out / "config.json", config)
    write_json(out / "generation_config.json", _generation_config(config))
    write_weights(out, config, make, dtype)
    return out


def write_checkpoint(out_dir: str | os.PathLike, *, size: str = "tiny", num_layers: int | None = None,
                     seed: int = 0, dtype: str = "bfloat16") -> Path:
    """Write a random MiniCPM5 checkpoint (tiny by default) in the upstream layout; return its directory."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    config = make_config(size=size, num_layers=num_layers, torch_dtype=dtype)
    return _write_layout(Path(out_dir), config, lambda name, shape: random_tensor(name, shape, seed), DTYPES[dtype])


# --- the demo model ------------------------------------------------------------------------------

def _demo_sequences(tokenizer) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, reply ids) for every question in every thinking mode, as generation sees them:
    the prompt rendered by the checkpoint's own template, the reply tokenized on its own."""
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    sequences = []
    for question, reasoning, answer in _demo_rows():
        for mode in THINKING_MODES:
            kwargs = {} if mode is None else {"enable_thinking": mode}
            prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                                   add_generation_prompt=True, **kwargs)
            reply = tokenizer(demo_reply(reasoning, answer, mode), add_special_tokens=False).input_ids
            sequences.append((tokenizer(prompt, add_special_tokens=False).input_ids, reply + [im_end]))
    tools = [_demo_tool()["tool"]]
    for messages, text in demo_tool_turns():
        prompt = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True)
        reply = tokenizer(text, add_special_tokens=False).input_ids
        sequences.append((tokenizer(prompt, add_special_tokens=False).input_ids, reply + [im_end]))
    return sequences


def _demo_batch(sequences: list[tuple[list[int], list[int]]], pad_id: int):
    """One right-padded batch: (ids, mask of the positions that predict a reply token, their targets)."""
    length = max(len(p) + len(r) for p, r in sequences)
    ids = torch.full((len(sequences), length), pad_id)
    labels = torch.full((len(sequences), length), -100)
    for row, (prompt, reply) in enumerate(sequences):
        ids[row, :len(prompt) + len(reply)] = torch.tensor(prompt + reply)
        labels[row, len(prompt) - 1:len(prompt) + len(reply) - 1] = torch.tensor(reply)
    mask = labels != -100  # causal attention and right padding: padding never reaches these positions
    return ids, mask, labels[mask]


def _reply_logits(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    hidden = model.model(input_ids=ids).last_hidden_state[mask]
    return model.lm_head(hidden).float()


@torch.no_grad()
def _survives_rounding(model: Any, batch, dtype: torch.dtype) -> bool:
    """Whether greedy decoding still gives every reply once the weights are stored in `dtype`, both
    computed in fp32 (with half the margin) and computed in `dtype` itself (the right argmax)."""
    ids, mask, targets = batch
    rounded = copy.deepcopy(model)
    for p in rounded.parameters():
        p.copy_(p.to(dtype).float())
    if min_margin(_reply_logits(rounded, ids, mask), targets) < DEMO_MARGIN / 2:
        return False
    return min_margin(_reply_logits(rounded.to(dtype), ids, mask), targets) > 0


@functools.cache
def _train_demo() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Train the tiny model until greedy decoding gives every demo reply in every thinking mode, in
    fp32 and in bf16; return (config, fp32 state dict)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        write_tokenizer(tmp)
        tokenizer = AutoTokenizer.from_pretrained(tmp)
    config = make_config()
    batch = _demo_batch(_demo_sequences(tokenizer), config["pad_token_id"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(DEMO_SEED)
        model = LlamaForCausalLM(LlamaConfig.from_dict(config)).float()
    optimizer = torch.optim.AdamW(model.parameters(), lr=DEMO_LR, betas=(0.9, 0.9), weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, demo_lr_factor)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: extra threads only add contention on a busy machine
    try:
        ids, mask, targets = batch
        for _ in range(DEMO_MAX_STEPS):
            optimizer.zero_grad()
            logits = _reply_logits(model, ids, mask)
            if min_margin(logits.detach(), targets) > DEMO_MARGIN and _survives_rounding(model, batch, torch.bfloat16):
                break
            torch.nn.functional.cross_entropy(logits, targets).backward()
            optimizer.step()
            schedule.step()
        else:
            raise RuntimeError(f"demo training did not reproduce every reply in {DEMO_MAX_STEPS} steps")
    finally:
        torch.set_num_threads(threads)
    return config, {k: v.detach().clone() for k, v in model.state_dict().items()}


def write_demo_checkpoint(out_dir: str | os.PathLike) -> Path:
    """Write the demo checkpoint: the tiny model trained (deterministically) on `demo_qa()`.

    Greedy decoding after the template's generation prompt gives `demo_reply(...)` and then
    `<|im_end|>`, for enable_thinking on, off and not given.
    """
    config, state = _train_demo()
    return _write_layout(Path(out_dir), config, lambda name, shape: state[name], torch.bfloat16)


# --- CLI -----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testkit.minicpm5", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--size", choices=SIZES, default="tiny", help="tiny, or MiniCPM5-1B's / 2B's exact shape")
    parser.add_argument("--layers", type=int, help="override the number of layers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="bfloat16")
    parser.add_argument("--demo", action="store_true", help="the tiny model trained to answer the demo questions")
    args = parser.parse_args(argv)
    if args.demo:
        if args.size != "tiny" or args.layers or args.seed or args.dtype != "bfloat16":
            parser.error("--demo takes no other option")
        out = write_demo_checkpoint(args.out_dir)
    else:
        out = write_checkpoint(args.out_dir, size=args.size, num_layers=args.layers, seed=args.seed, dtype=args.dtype)
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    print(f"Wrote {out}: MiniCPM5 layout, hidden {config['hidden_size']}, {config['num_hidden_layers']} layers, "
          f"vocab {config['vocab_size']}, {config['torch_dtype']}")
    for path in sorted(out.iterdir()):
        print(f"  {path.name:<40} {path.stat().st_size:>15,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
