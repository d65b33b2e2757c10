"""Every string the app shows, in Chinese and English, and the choice between them.

The language is the user's pick in the sidebar (auto / 中文 / English); "auto" follows the
browser's language (`st.context.locale`), Chinese for any `zh-*`, English otherwise. A test checks
that both languages have the same keys, no empty values and the same {placeholders}.

English help texts for the generation parameters are taken from the GenerationParams schema, so
they cannot drift from validation; the Chinese ones are translations of them. Messages of core
errors (minicpm_core) are English; the app puts a translated headline above each, and shows the
message itself in Chinese where ERRORS_ZH has its code (the errors a chat user meets: no model
downloaded yet or a failed download, a question too long, out of memory, a conversation deleted
elsewhere, a bad import file). Rarer errors, and those only API clients meet, stay English.
"""

from __future__ import annotations

import streamlit as st

from minicpm_core.errors import MiniCPMError
from minicpm_core.params import GenerationParams
from ui import state

LANGUAGES = ("auto", "zh", "en")
LANGUAGE_KEY = "language"  # the sidebar widget's key; its kept value is the user's choice

_PARAMS = (*state.SLIDER_PARAMS, "seed")  # the sidebar's generation settings, from the schema

EN: dict[str, str] = {
    # frame and navigation
    "language": "Language",
    "language_auto": "Auto",
    "page_chat": "Chat",
    "page_compare": "Compare",
    "page_model": "Model",
    "loading_model": "Loading the model (once per server process)… You can ask now: the reply starts as soon "
                     "as it is ready.",
    "loading_model_for": "Waiting for the model: loading for {seconds:.0f} s…",
    "demo_banner": "Demo model: a tiny model that comes with the app — answers are canned. It knows only a few "
                   "questions (try the examples) and does not follow a conversation. Start the app with a real "
                   "{model} checkpoint to chat for real.",
    "gpu_unusable": "This machine has an NVIDIA GPU, but PyTorch cannot use it: the model runs on the CPU.",
    # Streamlit's own texts in the import uploader (ui/widget_texts.py)
    "uploader_button": "Upload",
    "uploader_limit": "{mb} MB per file • JSON",
    # password
    "auth_title": "MiniCPM-2B Chat",
    "auth_password": "Password",
    "auth_submit": "Enter",
    "auth_wrong": "Wrong password.",
    "auth_wait": "Too many wrong tries: wait {seconds} s, then try again.",
    "auth_token": "Password or access token",
    "auth_token_help": "No password is set, so the app made an access token when it started: the terminal that "
                       "runs it prints it, with a link that logs you in.",
    "auth_wrong_token": "Wrong password or access token.",
    # missing model / load errors
    "setup_title": "The model is not here yet",
    "setup_download_intro": "Download **{model}** from ModelScope into `{target}` now ({size}; this "
                            "takes a while, and the download resumes if interrupted):",
    "setup_size_known": "{gb:g} GB",
    "setup_size_unknown": "its size is not known here",
    "setup_download": "Download the model",
    "setup_or_command": "Or run this in a terminal, then reload this page:",
    "setup_local_dir": "`{path}` is a folder path, not a model id, so the app cannot download into it. Point "
                       "`--model` at a folder holding a complete MiniCPM-2B checkpoint, for example:",
    "setup_try_demo": "Just trying the app? Start it with `--demo`: a tiny built-in model, no download.",
    "setup_downloading": "Downloading {model} into {target}…",
    "setup_progress": "{size:.2f} GiB in {target} so far…",
    "setup_downloaded": "Downloaded to {path}. Loading it…",
    "setup_download_failed": "The download failed.",
    "load_failed_title": "The model could not be loaded",
    # error headlines (the core's message follows)
    "err_import": "This file cannot be imported.",
    "err_context_overflow": "The question does not fit in the context window.",
    "err_invalid_request": "This request cannot be served.",
    "err_model_not_found": "No model found.",
    "err_generation_failed": "Generation failed.",
    "err_busy": "The model is busy: your question is saved. Ask again in a moment with Regenerate.",
    "err_not_found": "Not found.",
    "err_generic": "Something went wrong.",
    # sidebar: conversations
    "conversations": "Conversations",
    "new_conversation": "New conversation",
    "untitled": "Untitled conversation",
    "rename": "Rename",
    "title": "Title",
    "save": "Save",
    "delete": "Delete",
    "delete_warning": "This deletes the conversation and all its messages for good.",
    "delete_confirm": "Delete permanently",
    "deleted": "Conversation deleted.",
    "conversation_gone": "That conversation no longer exists (deleted in another tab?).",
    "export_markdown": "Export as Markdown",
    "export_json": "Export as JSON",
    "import_json": "Import a conversation (JSON)",
    "import_help": "A JSON file exported from this app, or a JSON list of {\"role\", \"content\"} messages.",
    "imported": "Imported “{title}” ({n} messages).",
    # sidebar: settings
    "settings": "Generation settings",
    "preset_precise": "Precise",
    "preset_precise_help": "Low randomness: focused, repeatable answers.",
    "preset_balanced": "Balanced",
    "preset_balanced_help": "The defaults: the loaded model's recommended settings.",
    "preset_creative": "Creative",
    "preset_creative_help": "More randomness: varied, imaginative answers.",
    "param_temperature": "Temperature",
    "param_top_p": "Top-p",
    "param_repetition_penalty": "Repetition penalty",
    "param_max_length": "Max length (tokens)",
    "param_seed": "Seed",
    "param_min_p": "Min-p",
    "advanced_settings": "Advanced",
    "max_length_budget": "This model's context is {context:,} tokens. The default max_length, {n:,}, is the "
                         "longest whose KV cache ({kb:.1f} KB a token) fits in the free memory ({free:.1f} GB), "
                         "within the slider's range.",
    "think": "Think before answering",
    "think_help": "The model first reasons in a collapsible block, then answers. The reasoning is kept with "
                  "the reply but never sent back to the model.",
    "think_model_decides": "Until you switch it, the model decides (its chat template's default).",
    "thinking": "Thinking… {seconds:.1f} s",
    "thought": "Thought for {seconds:.1f} s",
    "thought_tokens": "Thought for {seconds:.1f} s · {n} tokens",
    "cut_in_thinking": "The reply reached max_length while the model was still thinking, before any answer. "
                       "Raise max_length in the sidebar, or switch thinking off, and regenerate.",
    "server_ignores": "This server ignores: {controls}",
    **{f"help_{name}": GenerationParams.help(name) for name in _PARAMS},
    "seed_placeholder": "Random",
    "system_prompt": "System prompt",
    "system_prompt_placeholder": "Optional: instructions placed before the conversation",
    "system_prompt_help": "Plain text put before the first question of every request. MiniCPM-2B has no "
                          "system role; it reads this as context.",
    "reset_settings": "Reset to defaults",
    # chat page
    "chat_title": "{model} Chat",  # the loaded model's family: MiniCPM-2B, MiniCPM5
    "chat_placeholder": "Ask {model} anything…",
    "chat_welcome": "Ask anything, in Chinese or English. Replies appear as they are written; Stop keeps what "
                    "was said so far. The sidebar tunes how the model samples.",
    "examples": "Try one of these",
    "example_1": "Introduce yourself in one sentence.",
    "example_2": "Write a Python function that checks whether a number is prime.",
    "example_3": "Explain the attention mechanism in simple terms.",
    "example_4": "Write a short poem about autumn.",
    "conversation_not_found": "That conversation does not exist (it may have been deleted). Starting a new one.",
    "context_meter": "Context: {used:,} / {budget:,} tokens",
    "turns_dropped": "The {n} oldest turn(s) no longer fit in max_length and were left out of what the model saw.",
    "regenerate": "Regenerate",
    "edit_question": "Edit question",
    "edit_send": "Send edited question",
    "edit_empty": "The edited question is empty; nothing was changed.",
    "clear_conversation": "Clear conversation",
    "version_older": "Previous version",
    "version_newer": "Next version",
    "version_of": "{n} / {of}",
    "show_earlier": "Show earlier messages ({n} more)",
    "queue_position": "Waiting in the queue: {n} ahead of you…",
    "stat_tokens": "{n} tokens",
    "stat_speed": "{speed:.1f} tokens/s",
    "finish_stop": "finished",
    "finish_length": "cut off at max_length",
    "finish_cancelled": "stopped",
    "stop_reply": "Stop",
    "finish_error": "error",
    "finish_unfinished": "unfinished",
    # compare page
    "compare_title": "Compare settings",
    "compare_intro": "One question, answered under two parameter sets side by side. A uses the sidebar's "
                     "settings; B uses the sliders below. Seed and system prompt are shared.",
    "compare_b_settings": "Settings B",
    "compare_prompt": "Question",
    "compare_run": "Answer with A and B",
    "compare_side_a": "A · sidebar settings",
    "compare_side_b": "B · settings B",
    # model page
    "model_title": "Model",
    "refresh": "Refresh",
    "model_loaded": "Loaded model",
    "models_header": "Models",
    "models_intro": "Every model this app supports. **Use this model** switches the whole server: every open "
                    "session gets it, replies under way finish or stop, and the previous model's memory is freed.",
    "models_demo_header": "Demo models (ship with the app, no download)",
    "model_facts": "{size} · {dtype} · context {context:,} tokens",
    "model_facts_demo": "tiny, canned answers · context {context:,} tokens",
    "model_thinks": "thinks before answering",
    "model_state_loaded": "Loaded",
    "model_state_downloaded": "Downloaded",
    "model_state_missing": "Not downloaded",
    "model_state_builtin": "Built in",
    "model_state_downloading": "Downloading…",
    "model_state_loading": "Loading…",
    "model_use": "Use this model",
    "model_download": "Download",
    "model_downloading": "Downloading {model}: {done:.2f} of {size:.1f} GB",
    "model_downloaded_now": "{model} is downloaded: you can use it now.",
    "models_remote": "This app uses the model server at {url}: models are chosen there.",
    "models_login_to_switch": "Log in to switch models.",
    "switching_banner": "The server is switching from {source} to {target} (asked at {time}). Replies under way "
                        "finish or stop within {drain:.0f} s; then {target} loads. You can ask now: the reply "
                        "starts once it has loaded.",
    "switched_notice": "The server now runs **{target}** (switched from {source} at {time}).",
    "switch_failed_notice": "Switching to {target} failed, so {source} is loaded again.",
    "finish_switched": "stopped: the server switched to {model}",
    "err_model_switching": "The server is switching models.",
    "model_property": "Property",
    "model_value": "Value",
    "info_backend": "Backend",
    "info_source": "Source",
    "info_path": "Path",
    "info_base_url": "Server URL",
    "info_model": "Served model",
    "info_device": "Device",
    "info_dtype": "Data type",
    "info_attention": "Attention implementation",
    "info_parameters": "Parameters",
    "info_memory_bytes": "Weights memory",
    "info_load_seconds": "Load time",
    "info_context_length": "Context length",
    "info_max_concurrent": "Replies generated at once",
    "info_reachable": "Server reachable",
    "info_error": "Error",
    "info_served_models": "Models on the server",
    "info_owned_by": "Owned by",
    "info_health": "Server health",
    "info_ignored_controls": "Controls the server ignores",
    "n_tokens": "{n:,} tokens",
    "queue_state": "Queue",
    "queue_running": "Generating now",
    "queue_waiting": "Waiting",
    "recent_replies": "Recent replies",
    "no_replies_yet": "No replies yet.",
    "col_completion_tokens": "Tokens",
    "col_tokens_per_second": "Tokens/s",
    "col_ttft_seconds": "First token (s)",
    "col_queue_seconds": "Queued (s)",
    "col_total_seconds": "Total (s)",
    "col_prompt_tokens": "Prompt tokens",
    "col_cached_tokens": "Cached prompt tokens",
    "col_finish_reason": "Finish",
    # sidebar: search and the conversation list by date (ui/search.py, ui/sidebar.py)
    "search": "Search conversations",
    "search_placeholder": "Search all conversations",
    "search_no_results": "No message matches.",
    "group_today": "Today",
    "group_yesterday": "Yesterday",
    "group_week": "Previous 7 days",
    "group_older": "Older",
    "show_more_conversations": "Show more",
}

ZH: dict[str, str] = {
    "language": "语言",
    "language_auto": "自动",
    "page_chat": "聊天",
    "page_compare": "对比",
    "page_model": "模型",
    "loading_model": "正在加载模型（每个服务进程只加载一次）……现在就可以提问：模型就绪后立即开始回答。",
    "loading_model_for": "正在等待模型：已加载 {seconds:.0f} 秒…",
    "demo_banner": "演示模型：随应用附带的微型模型——回答是预设的。它只认识几个问题（可以点示例试试），"
                   "也不会联系上下文。用真正的 {model} 权重启动应用才能真正聊天。",
    "gpu_unusable": "这台机器有 NVIDIA 显卡，但 PyTorch 用不了它：模型正在 CPU 上运行（很慢）。",
    # Streamlit's own texts in the import uploader (ui/widget_texts.py)
    "uploader_button": "上传",
    "uploader_limit": "单个文件不超过 {mb} MB · JSON",
    "auth_title": "MiniCPM-2B 聊天",
    "auth_password": "密码",
    "auth_submit": "进入",
    "auth_wrong": "密码错误。",
    "auth_wait": "错误次数太多：请等 {seconds} 秒后再试。",
    "auth_token": "密码或访问令牌",
    "auth_token_help": "没有设置密码，所以应用启动时生成了一个访问令牌："
                       "运行应用的终端里打印了它，还有一个能直接登录的链接。",
    "auth_wrong_token": "密码或访问令牌错误。",
    "setup_title": "还没有模型",
    "setup_download_intro": "现在从 ModelScope 把 **{model}** 下载到 `{target}`"
                            "（{size}，需要一段时间；中断后可以续传）：",
    "setup_size_known": "{gb:g} GB",
    "setup_size_unknown": "大小未知",
    "setup_download": "下载模型",
    "setup_or_command": "或者在终端里运行下面的命令，然后刷新本页：",
    "setup_local_dir": "`{path}` 是文件夹路径而不是模型 ID，应用无法自动下载到这里。"
                       "请让 `--model` 指向存有完整 MiniCPM-2B 权重的文件夹，例如：",
    "setup_try_demo": "只是想试试这个应用？用 `--demo` 启动：内置的小模型，无需下载。",
    "setup_downloading": "正在把 {model} 下载到 {target}…",
    "setup_progress": "{target} 中已有 {size:.2f} GiB…",
    "setup_downloaded": "已下载到 {path}，正在加载…",
    "setup_download_failed": "下载失败。",
    "load_failed_title": "模型加载失败",
    "err_import": "无法导入这个文件。",
    "err_context_overflow": "问题太长，放不进上下文窗口。",
    "err_invalid_request": "无法处理这个请求。",
    "err_model_not_found": "找不到模型。",
    "err_generation_failed": "生成失败。",
    "err_busy": "模型正忙：你的问题已保存。请稍后点“重新生成”再问一次。",
    "err_not_found": "找不到。",
    "err_generic": "出错了。",
    "conversations": "对话",
    "new_conversation": "新对话",
    "untitled": "未命名对话",
    "rename": "重命名",
    "title": "标题",
    "save": "保存",
    "delete": "删除",
    "delete_warning": "将永久删除这个对话及其全部消息。",
    "delete_confirm": "永久删除",
    "deleted": "对话已删除。",
    "conversation_gone": "这个对话已不存在（也许在另一个标签页里删除了？）。",
    "export_markdown": "导出为 Markdown",
    "export_json": "导出为 JSON",
    "import_json": "导入对话（JSON）",
    "import_help": "从本应用导出的 JSON 文件，或由 {\"role\", \"content\"} 消息组成的 JSON 列表。",
    "imported": "已导入“{title}”（{n} 条消息）。",
    "settings": "生成参数",
    "preset_precise": "精确",
    "preset_precise_help": "低随机性：回答集中、可复现。",
    "preset_balanced": "均衡",
    "preset_balanced_help": "默认值：当前模型的推荐设置。",
    "preset_creative": "创意",
    "preset_creative_help": "高随机性：回答更多样、更有想象力。",
    "param_temperature": "温度 (temperature)",
    "param_top_p": "核采样 (top_p)",
    "param_repetition_penalty": "重复惩罚 (repetition_penalty)",
    "param_max_length": "最大长度 (max_length，token)",
    "param_seed": "随机种子 (seed)",
    "advanced_settings": "高级",
    "max_length_budget": "该模型的上下文为 {context:,} 个 token。默认的 max_length（{n:,}）是在滑块范围内、其 KV 缓存"
                         "（每个 token {kb:.1f} KB）能放进空闲内存（{free:.1f} GB）的最大值。",
    "think": "先思考再回答",
    "think_help": "模型先在可折叠的区块里推理，再给出回答。推理内容随回复保存，但不会再发送给模型。",
    "think_model_decides": "在你切换之前，由模型自己决定（其对话模板的默认）。",
    "thinking": "思考中… {seconds:.1f} 秒",
    "thought": "思考了 {seconds:.1f} 秒",
    "thought_tokens": "思考了 {seconds:.1f} 秒 · {n} 个 token",
    "cut_in_thinking": "回复在模型仍在思考、尚未回答时就达到了 max_length。请在侧边栏调高 max_length，或关闭思考，"
                       "然后重新生成。",
    "server_ignores": "此服务器忽略：{controls}",
    "help_temperature": "随机程度。0 总是选择最可能的 token；越高，回答越多样、越不集中。",
    "help_top_p": "核采样：只在累计概率达到 top_p 的最可能的 token 中采样。越低越集中。",
    "help_repetition_penalty": "抑制重复对话中已出现的 token。1.0 为关闭；超过约 1.1 时 MiniCPM-2B 的回答会变差。",
    "help_max_length": "问题加回答的 token 总预算，与模型自带的 chat() 相同。对话放不下时，会丢弃最早的几轮。",
    "help_seed": "随机种子：相同的种子、问题和参数会得到相同的回答。",
    "param_min_p": "最小概率 (min_p)",
    "help_min_p": "只保留概率不低于最可能 token 的 min_p 倍的 token；0 为关闭，1 只留下最可能的 token。",
    "seed_placeholder": "随机",
    "system_prompt": "系统提示词",
    "system_prompt_placeholder": "可选：放在对话之前的说明",
    "system_prompt_help": "每次请求时放在第一个问题之前的纯文本。MiniCPM-2B 没有 system 角色，会把它当作上下文来读。",
    "reset_settings": "恢复默认",
    "chat_title": "{model} 聊天",
    "chat_placeholder": "向 {model} 提问…",
    "chat_welcome": "用中文或英文随便问。回答边生成边显示；点“停止”会保留已生成的部分。侧边栏可以调整采样参数。",
    "examples": "试试这些问题",
    "example_1": "用一句话介绍一下你自己。",
    "example_2": "写一个判断素数的 Python 函数。",
    "example_3": "用通俗的话解释一下注意力机制。",
    "example_4": "写一首关于秋天的小诗。",
    "conversation_not_found": "这个对话不存在（可能已被删除），将开始一个新对话。",
    "context_meter": "上下文：{used:,} / {budget:,} token",
    "turns_dropped": "最早的 {n} 轮对话超出了 max_length，模型这次没有看到它们。",
    "regenerate": "重新生成",
    "edit_question": "编辑问题",
    "edit_send": "发送修改后的问题",
    "edit_empty": "修改后的问题是空的，未做任何更改。",
    "clear_conversation": "清空对话",
    "version_older": "上一个版本",
    "version_newer": "下一个版本",
    "version_of": "{n} / {of}",
    "show_earlier": "显示更早的消息（还有 {n} 条）",
    "queue_position": "正在排队：前面还有 {n} 个请求…",
    "stat_tokens": "{n} 个 token",
    "stat_speed": "{speed:.1f} token/秒",
    "finish_stop": "已完成",
    "finish_length": "达到 max_length 被截断",
    "finish_cancelled": "已停止",
    "stop_reply": "停止",
    "finish_error": "出错",
    "finish_unfinished": "未完成",
    "compare_title": "参数对比",
    "compare_intro": "同一个问题，用两组参数并排回答。A 使用侧边栏的参数，B 使用下面的滑块。随机种子和系统提示词共用。",
    "compare_b_settings": "参数 B",
    "compare_prompt": "问题",
    "compare_run": "用 A 和 B 回答",
    "compare_side_a": "A · 侧边栏参数",
    "compare_side_b": "B · 参数 B",
    "model_title": "模型",
    "refresh": "刷新",
    "model_loaded": "已加载的模型",
    "models_header": "模型列表",
    "models_intro": "本应用支持的所有模型。点 **使用这个模型** 会切换整个服务器：所有打开的会话都换用它，"
                    "正在生成的回答会"
                    "完成或停止，之前模型占用的内存会释放。",
    "models_demo_header": "演示模型（随应用附带，无需下载）",
    "model_facts": "{size} · {dtype} · 上下文 {context:,} 个 token",
    "model_facts_demo": "极小模型，只会几条固定回答 · 上下文 {context:,} 个 token",
    "model_thinks": "先思考再回答",
    "model_state_loaded": "已加载",
    "model_state_downloaded": "已下载",
    "model_state_missing": "未下载",
    "model_state_builtin": "内置",
    "model_state_downloading": "下载中…",
    "model_state_loading": "加载中…",
    "model_use": "使用这个模型",
    "model_download": "下载",
    "model_downloading": "正在下载 {model}：{done:.2f} / {size:.1f} GB",
    "model_downloaded_now": "{model} 已下载，现在可以使用。",
    "models_remote": "本应用使用 {url} 上的模型服务器：模型在那里选择。",
    "models_login_to_switch": "登录后才能切换模型。",
    "switching_banner": "服务器正在从 {source} 切换到 {target}（{time} 发起）。"
                        "正在生成的回答会在 {drain:.0f} 秒内完成或"
                        "停止，然后加载 {target}。现在就可以提问：加载好后立即开始回答。",
    "switched_notice": "服务器现在运行 **{target}**（{time} 从 {source} 切换而来）。",
    "switch_failed_notice": "切换到 {target} 失败，已重新加载 {source}。",
    "finish_switched": "已停止：服务器切换到了 {model}",
    "err_model_switching": "服务器正在切换模型。",
    "model_property": "项目",
    "model_value": "值",
    "info_backend": "后端",
    "info_source": "来源",
    "info_path": "路径",
    "info_base_url": "服务器地址",
    "info_model": "服务端模型",
    "info_device": "设备",
    "info_dtype": "数据类型",
    "info_attention": "注意力实现",
    "info_parameters": "参数量",
    "info_memory_bytes": "权重占用内存",
    "info_load_seconds": "加载耗时",
    "info_context_length": "上下文长度",
    "info_max_concurrent": "同时生成的回答数",
    "info_reachable": "服务器可达",
    "info_error": "错误",
    "info_served_models": "服务器上的模型",
    "info_owned_by": "所有者",
    "info_health": "服务器状态",
    "info_ignored_controls": "服务器忽略的参数",
    "n_tokens": "{n:,} 个 token",
    "queue_state": "队列",
    "queue_running": "正在生成",
    "queue_waiting": "排队中",
    "recent_replies": "最近的回答",
    "no_replies_yet": "还没有回答。",
    "col_completion_tokens": "token 数",
    "col_tokens_per_second": "token/秒",
    "col_ttft_seconds": "首 token (秒)",
    "col_queue_seconds": "排队 (秒)",
    "col_total_seconds": "总耗时 (秒)",
    "col_prompt_tokens": "提示 token",
    "col_cached_tokens": "命中缓存的提示 token",
    "col_finish_reason": "结束原因",
    # sidebar: search and the conversation list by date (ui/search.py, ui/sidebar.py)
    "search": "搜索对话",
    "search_placeholder": "在所有对话中搜索",
    "search_no_results": "没有匹配的消息。",
    "group_today": "今天",
    "group_yesterday": "昨天",
    "group_week": "过去 7 天",
    "group_older": "更早",
    "show_more_conversations": "显示更多",
}

STRINGS: dict[str, dict[str, str]] = {"en": EN, "zh": ZH}

# The Model page's notes on known models (families' KnownModel.note, English) in Chinese; a test checks
# that every note has one.
MODEL_NOTES_ZH = {
    "the seed tutorial's model": "教程所用的模型",
    "for GPUs without bfloat16 (V100, T4)": "适合不支持 bfloat16 的显卡（V100、T4）",
    "the same architecture, smaller": "同样的架构，更小",
    "thinks; OpenBMB documents thinking off for 5-1B only; approx. 2.5B parameters":
        "会先思考；OpenBMB 只为 5-1B 说明了关闭思考；约 25 亿参数",
    "thinking on or off; the smallest": "可开关思考；最小的一个",
    "before RL: supervised fine-tuning only": "强化学习之前：只做了监督微调",
}

# Chinese for the core's error messages, by MiniCPMError.code, filled from the error's details. In
# English the app shows the core's own message, so only the translations live here.
_IMPORT_HINT_ZH = ("可以导入的是本应用导出的 JSON（含 \"messages\" 列表），或者一个消息列表，如 "
                   "[{{\"role\": \"user\", \"content\": \"你好\"}}]。")
ERRORS_ZH: dict[str, str] = {
    "message_too_long": "这条消息有 {length:,} 个字符，超过了 {limit:,} 的上限：请缩短或分成几次发送。",
    "context_overflow": "这个问题有 {tokens} 个 token，但问题和回答加起来最多 {limit} 个 token（max_length 或模型的"
                        "上下文长度）。请缩短问题，或者拆成几部分来问。",
    "context_overflow_at_least": "这个问题至少有 {tokens} 个 token，"
                                 "但问题和回答加起来最多 {limit} 个 token（max_length 或"
                                 "模型的上下文长度）。请缩短问题，或者拆成几部分来问。",
    "queue_full": "服务器正忙：所有回答位都在生成，排队也已满。请大约 {retry_after} 秒后再试。",
    "out_of_memory": "生成时显存不足。请调小 max_length、清空或缩短对话，或者关闭其他占用显存的程序，然后重试。",
    "conversation_gone": "这个对话已经不存在了（可能在另一个标签页里被删除了）。",
    "model_not_downloaded": "{model} 还没有下载（查找位置：{target}）。\n下载命令：\n    {command}",
    "model_incomplete": "{model} 下载不完整（位置：{target}）。缺少：\n{missing}重新运行下载命令会接着下载："
                        "\n    {command}",
    "model_dir_missing": "{path} 下没有 MiniCPM-2B 权重：目录不存在。\n下载命令：\n    {command}",
    "model_dir_incomplete": "{path} 下的 MiniCPM-2B 权重不完整。缺少：\n{missing}如果下载中断过，"
                            "重新运行下载命令会接着下载：\n"
                            "    {command}",
    "download_failed": "无法从 ModelScope 下载 {model} 到 {target}：{reason}。\n请检查网络连接或代理（HTTPS_PROXY）后"
                       "重试（已下载的文件会保留）：\n    {command}\n也可以把已有的 {model} 复制到 {target}。",
    "model_switching": "服务器正在切换到 {model}。请等它加载好后再问。",
    "switch_under_way": "服务器已经在切换到 {model}，请等它加载好。",
    "switch_same_model": "{model} 就是现在加载的模型。",
    "bad_setting": "{setting} 的值 {value!r} 不对：{reason}。请改正或去掉它（去掉时用默认值）。",
    "import_too_big": "文件有 {size:,} 字节，超过了 {limit:,} 字节的上限。" + _IMPORT_HINT_ZH,
    "import_not_utf8": "文件不是 UTF-8 文本（第 {position} 个字节有误）。" + _IMPORT_HINT_ZH,
    "import_empty": "文件是空的。" + _IMPORT_HINT_ZH,
    "import_not_json": "文件不是有效的 JSON（第 {line} 行第 {column} 列）。" + _IMPORT_HINT_ZH,
    "import_too_deep": "文件的 JSON 嵌套太深，不是对话。" + _IMPORT_HINT_ZH,
    "import_wrong_format": "文件的 \"format\" 是 {found!r}，本应用读取的是 {expected!r}。" + _IMPORT_HINT_ZH,
    "import_no_messages": "JSON 对象里没有 \"messages\" 列表。" + _IMPORT_HINT_ZH,
    "import_title_type": "\"title\" 不是字符串。" + _IMPORT_HINT_ZH,
    "import_title_surrogates": "\"title\" 含有无效的字符转义（单独的代理项，如 \"\\ud800\"）。" + _IMPORT_HINT_ZH,
    "import_messages_type": "\"messages\" 不是列表。" + _IMPORT_HINT_ZH,
    "import_not_conversation": "文件内容不是对话。" + _IMPORT_HINT_ZH,
    "import_too_many_messages": "文件有 {count} 条消息，超过了 {limit} 条的上限。" + _IMPORT_HINT_ZH,
    "import_message_type": "第 {number} 条消息不是含 role 和 content 的对象。" + _IMPORT_HINT_ZH,
    "import_message_no_role": "第 {number} 条消息没有 \"role\"。" + _IMPORT_HINT_ZH,
    "import_message_bad_role": "第 {number} 条消息的角色是 {role!r}，不是 {roles} 之一。" + _IMPORT_HINT_ZH,
    "import_message_no_content": "第 {number} 条消息没有 \"content\"。" + _IMPORT_HINT_ZH,
    "import_message_content_parts": "第 {number} 条消息的内容里有非文本的部分（只接受 "
                                    "{{\"type\": \"text\", \"text\": ...}}）。" + _IMPORT_HINT_ZH,
    "import_message_content_type": "第 {number} 条消息的 \"content\" 不是字符串。" + _IMPORT_HINT_ZH,
    "import_message_content_surrogates": "第 {number} 条消息的 \"content\" 含有无效的字符转义（单独的代理项，如 "
                                         "\"\\ud800\"）。" + _IMPORT_HINT_ZH,
    "import_message_too_long": "第 {number} 条消息有 {length} 个字符，超过了 {limit} 个字符的上限。" + _IMPORT_HINT_ZH,
    "import_message_meta_type": "第 {number} 条消息的 \"meta\" 不是对象。" + _IMPORT_HINT_ZH,
    "import_message_meta_surrogates": "第 {number} 条消息的 \"meta\" 含有无效的字符转义（单独的代理项，如 "
                                      "\"\\ud800\"）。" + _IMPORT_HINT_ZH,
    "import_message_meta_invalid": "第 {number} 条消息的 \"meta\" 里的 \"{key}\" 不对（{reason}）。" + _IMPORT_HINT_ZH,
    "import_message_duplicate_id": "第 {number} 条消息的 \"id\" {id!r} 与前面某条消息重复。" + _IMPORT_HINT_ZH,
    "import_message_bad_parent": "第 {number} 条消息的 \"parent\" {parent!r} 不是前面某条消息的 \"id\"。"
                                 + _IMPORT_HINT_ZH,
    # search (minicpm_core/search.py)
    "query_too_long": "搜索最多 {limit} 个字符，这次有 {length} 个。请搜索其中较短的一段。",
    "query_too_many_terms": "搜索最多 {limit} 个词，这次有 {count} 个。",
}


def resolve_language(choice: str | None, locale: str | None) -> str:
    """'zh' or 'en' from the user's choice; 'auto' (or nothing) follows the browser's locale."""
    if choice in STRINGS:
        return choice
    return "zh" if (locale or "").lower().startswith("zh") else "en"


def current_language() -> str:
    choice = st.session_state.get(LANGUAGE_KEY) or state.get(LANGUAGE_KEY)
    try:
        locale = st.context.locale
    except Exception:  # noqa: BLE001 - outside a script run there is no browser to ask
        locale = None
    return resolve_language(choice, locale)


def has(key: str) -> bool:
    return key in EN


def model_note(note: str) -> str:
    """A known model's note in the current language (English as the family wrote it)."""
    return MODEL_NOTES_ZH.get(note, note) if current_language() == "zh" else note


def error_message(exc: MiniCPMError) -> str:
    """The core's message for `exc`, in Chinese when the interface is and a translation exists."""
    template = ERRORS_ZH.get(exc.code or "") if current_language() == "zh" else None
    return template.format(**exc.details) if template else str(exc)


def t(key: str, **values) -> str:
    """The string `key` in the current language, with {placeholders} filled in."""
    text = STRINGS[current_language()][key]
    return text.format(**values) if values else text
