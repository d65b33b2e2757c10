"""The reference a MiniCPM5 reply is checked against: the checkpoint's own chat template rendered by
AutoTokenizer, then a plain greedy `LlamaForCausalLM.generate`, nothing of ours in between.
Shared by the engine's fidelity tests and the API's."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaForCausalLM


def load_bare(model_dir: Path):
    """The plain transformers model and tokenizer of a checkpoint directory."""
    return LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(model_dir)


def thinking_kwargs(mode: bool | None) -> dict:
    return {} if mode is None else {"enable_thinking": mode}


def reference_ids(tok, messages, mode, **template_kwargs) -> list[int]:
    """The prompt ids transformers builds: apply_chat_template(tokenize=True), which encodes the rendered
    text without adding special tokens (the template writes the BOS), as vLLM and llama.cpp send it."""
    return list(tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, **thinking_kwargs(mode),
                                        **template_kwargs)["input_ids"])


def bare_greedy(model, tok, messages, mode, max_new_tokens: int, **template_kwargs) -> tuple[str, list[int]]:
    """The reference: the checkpoint's own template by AutoTokenizer, then plain greedy generate."""
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **thinking_kwargs(mode),
                                     **template_kwargs)
    ids = torch.tensor([reference_ids(tok, messages, mode, **template_kwargs)])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_new_tokens)
    return prompt, out[0, ids.shape[1]:].tolist()
