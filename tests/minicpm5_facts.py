"""What OpenBMB's MiniCPM5 files are, as collected from public sources (/work/shared/MINICPM_FACTS.md,
issue 18): the one place the tests keep them. testkit/minicpm5.py writes its own constants; the facts
test (test_minicpm5_facts.py) checks what it writes against these, so a factory that drifts fails.

A fact no source confirms is in UNCONFIRMED and is followed as stated; change it here when it is
settled, and the factory must follow.
"""

from __future__ import annotations

BOS = ("<s>", 0)
PAD_ID = 1
TOKENIZER_ADDS_BOS = True            # tokenizer(text) starts with BOS...
TEMPLATE_WRITES_BOS = "{{- bos_token }}"  # ...and so does the template: tokenizer(rendered) gives [0, 0, ...]
THINK_TOKENS = {"<think>": 8, "</think>": 9}  # single added tokens
IM_END = "<|im_end|>"               # 130073 in the real vocabulary
EOS_IDS = [1, IM_END]               # generation_config.json's eos_token_id, the second by its token
GENERATION_CONFIG = {"do_sample": True, "temperature": 1.0, "top_p": 0.95}
TOOL_TAGS_SPECIAL = ("<tools>", "</tools>", "<tool_response>", "</tool_response>")
SHAPE_2B = {"num_hidden_layers": 42, "hidden_size": 2048, "num_attention_heads": 16, "num_key_value_heads": 2,
            "head_dim": 128, "rope_theta": 5e6, "vocab_size": 130560, "tie_word_embeddings": False,
            "max_position_embeddings": 131072}
KV_BYTES_PER_TOKEN_2B_BF16 = 2 * 42 * 2 * 128 * 2  # ~42 KB, as the facts say
# Earlier reasoning: the 2B template renders an earlier assistant turn's reasoning_content when sent,
# else an empty block; the 1B template only for assistant turns after the last user question.
EMPTY_THINK = "<think>\n\n</think>\n\n"
TOOLS_IN_SYSTEM = ("<tools>", "</tools>")  # the template writes the tools as JSON between these
TOOL_RESULT = ("<tool_response>", "</tool_response>")

UNCONFIRMED = {
    "think_special": "whether <think>/</think> are flagged special (the factory: not special)",
    "tool_tag_names": "which tool tags exist as special tokens: <tools>, <tool_response> and their closers are "
                      "assumed; the call itself (<function name=...>) is written as text",
    "tokenizer_class": "the tokenizer class in tokenizer_config.json (the factory: PreTrainedTokenizerFast)",
    "template_text": "the template's exact wording around the tools (the factory's is its own)",
    "no_think_on_2b": "whether enable_thinking=false is supported on 5-2B (OpenBMB: 5-1B only; SGLang shows 2B)",
}
