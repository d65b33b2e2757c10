"""Load a checkpoint as the native transformers model its family names (MiniCPM-2B by default).

What this module does, and why it exists at all rather than one `from_pretrained` call:
- recognises the checkpoint's model family from its files (`families.detect`) and lets the family
  map its config onto a native transformers class, so no code shipped in a checkpoint ever runs
  unless the caller passes `trust_remote_code=True`;
- streams the weights tensor by tensor, converting to the target dtype on the way, so loading the
  seed's ~10 GB fp32 `pytorch_model.bin` as bf16 never holds an fp32 copy of the model in memory
  (plain `from_pretrained` reads the whole .bin first: 3x the bf16 size);
- picks device, dtype and attention implementation with safe fallbacks, and reports what it chose.

It does not download anything (`download.py` does) and knows nothing about prompts or generation.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib.util
import json
import logging
import mmap
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

from . import families
from .download import TOKENIZER_FILES
from .errors import InvalidRequest, ModelNotFound
from .families import ModelFamily

log = logging.getLogger(__name__)

DTYPES = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
          "fp16": torch.float16, "float32": torch.float32, "fp32": torch.float32}
DEVICES = ("auto", "cuda", "cpu")
COPY_CHUNK_BYTES = 64 << 20  # source bytes converted at a time; bounds the transient memory of a load
_SAFETENSORS_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}


@dataclass
class LoadedModel:
    """A loaded model plus what a status page shows about it."""

    model: PreTrainedModel  # the family's model_class
    tokenizer: PreTrainedTokenizerBase
    path: Path
    source: str
    device: torch.device
    dtype: torch.dtype
    attn_implementation: str
    num_parameters: int
    memory_bytes: int
    load_seconds: float
    context_length: int
    family: ModelFamily = families.DEFAULT_FAMILY  # what the prompt and the engine ask about this model
    eos_token_ids: tuple[int, ...] = ()  # ids that end a reply (end_of_turn_ids); () means the tokenizer's eos
    demo: bool = False
    gpu_problem: str | None = None  # why an NVIDIA GPU on this machine is not used (see gpu_problem())

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def load_model(source: str | Path, device: str = "auto", dtype: str = "auto", *,
               attn_implementation: str = "auto", trust_remote_code: bool = False,
               cache_dir: str | Path | None = None, demo: bool = False) -> LoadedModel:
    """Load a checkpoint of a supported family from a local directory or a ModelScope model id.

    `source` may be a directory in the upstream layout or an id such as `OpenBMB/MiniCPM-2B-sft-fp32`,
    looked up where the seed tutorial downloads it (`cache_dir`, default `/root/autodl-tmp`).
    """
    started = time.perf_counter()
    path = _resolve(source, cache_dir)
    target_device = choose_device(device)
    problem = gpu_problem() if target_device.type == "cpu" and device == "auto" else None
    if problem:
        log.warning("%s", problem)
    target_dtype = choose_dtype(dtype, target_device)
    config = families.read_config(path)
    family = _family_of(path, config, trust_remote_code)
    tokenizer = load_tokenizer(path)
    if trust_remote_code:
        model, attn = _load_remote_code_model(path, target_device, target_dtype)
    else:
        model, attn = _load_native_model(path, family, config, target_device, target_dtype, attn_implementation)
    eos_ids = end_of_turn_ids(tokenizer, family, config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=eos_ids[0] if len(eos_ids) == 1 else list(eos_ids),
        pad_token_id=tokenizer.eos_token_id)
    warm_up(model, tokenizer)
    loaded = LoadedModel(
        model=model, tokenizer=tokenizer, path=path, source=str(source), device=target_device,
        dtype=target_dtype, attn_implementation=attn,
        num_parameters=sum(p.numel() for p in model.parameters()),
        memory_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        load_seconds=time.perf_counter() - started,
        context_length=model.config.max_position_embeddings, family=family, eos_token_ids=eos_ids, demo=demo,
        gpu_problem=problem)
    log.info("loaded %s (%s) on %s as %s with %s attention in %.1fs", path, family.label, target_device,
             loaded.dtype_name, attn, loaded.load_seconds)
    return loaded


WARM_UP_TOKENS = 2  # new tokens of the warm-up reply: a prefill and a decoding step, each run once


@torch.inference_mode()
def warm_up(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Generate a short reply once while loading: the first `generate` of a process pays for lazy setup
    (CUDA kernels and cuBLAS handles, attention kernel choice, CPU thread pools), which otherwise made
    the first user's reply several times slower than every later one."""
    ids = torch.tensor([tokenizer("hi").input_ids], device=model.device)
    try:
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=WARM_UP_TOKENS, do_sample=False,
                       temperature=None, top_p=None, top_k=None)
    except Exception:  # noqa: BLE001 - only a speed-up: a model that cannot generate says so on its first request
        log.warning("warming the model up failed; its first reply will be slower", exc_info=True)


def end_of_turn_ids(tokenizer: PreTrainedTokenizerBase, family: ModelFamily, config: dict) -> tuple[int, ...]:
    """The token ids that end a reply: the tokenizer's eos, the family's stop tokens, the config's eos.

    MiniCPM-2B: just `</s>`. MiniCPM5: `<|im_end|>` (its tokenizer's eos and its stop token) and the
    config's `[1, <|im_end|>]`, so `</s>` ends a reply too. A stop token the tokenizer does not know
    is a damaged checkpoint: without it a reply would run on to max_length.
    """
    ids: list[int] = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    for token in family.stop_tokens:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise ModelNotFound(f"The tokenizer lacks {token}, the token that ends a {family.label} turn: "
                                "tokenizer.json is not this model's (download it again).")
        ids.append(token_id)
    config_eos = config.get("eos_token_id")
    ids += config_eos if isinstance(config_eos, list) else [] if config_eos is None else [config_eos]
    return tuple(dict.fromkeys(int(i) for i in ids))


def _family_of(path: Path, config: dict, trust_remote_code: bool) -> ModelFamily:
    """The checkpoint's family; with the user's own remote code, an unknown one runs as the default."""
    try:
        return families.detect(path, config)
    except ModelNotFound:
        if not trust_remote_code:
            raise
        log.warning("%s is of no supported family; its own code runs it, prompted as %s", path,
                    families.DEFAULT_FAMILY.label)
        return families.DEFAULT_FAMILY


def _resolve(source: str | Path, cache_dir: str | Path | None) -> Path:
    from .download import resolve_source  # the download module owns "where do model ids live"

    return resolve_source(str(source), cache_dir)


# --- device, dtype, attention -------------------------------------------------------------------

def choose_device(device: str = "auto") -> torch.device:
    if device not in DEVICES and not device.startswith("cuda:"):
        raise InvalidRequest(f"device must be one of {', '.join(DEVICES)} or cuda:N; got {device!r}.", "device")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidRequest("device 'cuda' was asked for but no CUDA GPU is visible to PyTorch. "
                             + (gpu_problem() or "Use --device cpu, or check `nvidia-smi` and your torch build."),
                             "device")
    return torch.device(device)


def nvidia_gpu_present() -> bool:
    """An NVIDIA driver with a GPU on this machine, whether or not this PyTorch can use it."""
    return Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia/gpus").is_dir()


def gpu_problem() -> str | None:
    """Why PyTorch cannot use the NVIDIA GPU this machine has, and what to do; None if it can, or if
    there is none. The usual cause: a torch from PyPI built for a newer CUDA than the driver supports
    (transformers 5 needs torch >= 2.6, so an old image's torch gets replaced)."""
    if torch.cuda.is_available() or not nvidia_gpu_present():
        return None
    build = (f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build")
    return (f"This machine has an NVIDIA GPU, but PyTorch {torch.__version__} ({build}) cannot use it, "
            "so the model runs on the CPU, very slowly. `nvidia-smi` shows the newest CUDA your driver "
            "supports; install a PyTorch built for that CUDA or an older one, e.g. for CUDA 12.6:\n"
            "    pip install 'torch>=2.6' --index-url https://download.pytorch.org/whl/cu126")


def choose_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto`: bf16 where the hardware does it natively (MiniCPM was trained in bf16), else fp16 on
    older GPUs, else fp32 on CPUs without bf16 arithmetic."""
    if dtype != "auto":
        if dtype not in DTYPES:
            raise InvalidRequest(f"dtype must be auto, bfloat16, float16 or float32; got {dtype!r}.", "dtype")
        return DTYPES[dtype]
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16
        log.warning("This GPU has no bfloat16 support; using float16. MiniCPM-2B was trained in bf16: "
                    "the dpo-fp16 checkpoint is the one OpenBMB tuned for such GPUs.")
        return torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else torch.float32


def cpu_supports_bf16() -> bool:
    with contextlib.suppress(Exception):
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def choose_attention(requested: str, device: torch.device, dtype: torch.dtype) -> str:
    if requested != "auto":
        return requested
    flash_ok = (device.type == "cuda" and dtype in (torch.bfloat16, torch.float16)
                and importlib.util.find_spec("flash_attn") is not None)
    return "flash_attention_2" if flash_ok else "sdpa"


# --- tokenizer ----------------------------------------------------------------------------------

def load_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    """The tokenizer class tokenizer_config.json names (LlamaTokenizer upstream).

    Not AutoTokenizer: it would parse config.json as an unknown `minicpm` model (warnings), and with
    the config's auto_map it stops to ask on stdin whether to run the checkpoint's code.
    """
    try:
        settings = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
        tokenizer_class = tokenizer_class_from_name(settings.get("tokenizer_class") or "LlamaTokenizer")
        if tokenizer_class is None:
            raise ValueError(f"unknown tokenizer_class {settings.get('tokenizer_class')!r}")
        return tokenizer_class.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"Could not load the tokenizer from {path}: {exc}. The download may be "
                            f"incomplete: tokenizer_config.json and {' or '.join(TOKENIZER_FILES)} "
                            "are needed.") from None


# --- model --------------------------------------------------------------------------------------

def _load_native_model(path: Path, family: ModelFamily, raw_config: dict, device: torch.device,
                       dtype: torch.dtype, attn_requested: str) -> tuple[PreTrainedModel, str]:
    config = family.transformers_config(raw_config)
    attn = choose_attention(attn_requested, device, dtype)
    model = _empty_model(family.model_class, config, dtype, attn)
    if model.config._attn_implementation != attn:
        attn = model.config._attn_implementation
    _fill_weights(model, path, device, dtype)
    model.tie_weights()  # MiniCPM-2B ties lm_head to the embedding (a no-op for untied MiniCPM5)
    model.to(device)  # moves the (small) rotary buffers; parameters are already there
    model.eval()
    return model, attn


def _empty_model(model_class: type[PreTrainedModel], config, dtype: torch.dtype, attn: str) -> PreTrainedModel:
    """Parameters on the meta device (no memory, no random init); buffers real."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        try:
            return model_class._from_config(config, dtype=dtype, attn_implementation=attn)
        except (ImportError, ValueError) as exc:
            if attn == "sdpa":
                raise
            log.warning("attention %r unavailable (%s); falling back to sdpa", attn, exc)
            return model_class._from_config(config, dtype=dtype, attn_implementation="sdpa")


def _fill_weights(model: torch.nn.Module, path: Path, device: torch.device, dtype: torch.dtype) -> None:
    expected = {name for name, _ in model.named_parameters()}
    if getattr(model.config, "tie_word_embeddings", True):
        expected.discard("lm_head.weight")  # tied (MiniCPM-2B): the files have none; untied (MiniCPM5): they do
    seen: set[str] = set()
    for name, source in iter_checkpoint_tensors(path):
        if name not in expected:
            continue  # e.g. rotary buffers some exports include
        param = model.get_parameter(name)
        if tuple(param.shape) != tuple(source.shape):
            raise ModelNotFound(f"{path}: tensor {name} has shape {tuple(source.shape)}, config.json "
                                f"implies {tuple(param.shape)}. The checkpoint and its config disagree.")
        _set_parameter(model, name, copy_converted(source, device, dtype))
        seen.add(name)
    missing = sorted(expected - seen)
    if missing:
        raise ModelNotFound(f"{path}: the weights lack {len(missing)} tensors (e.g. {missing[0]}). "
                            "The download is incomplete; run the download command again.")


def _set_parameter(model: torch.nn.Module, name: str, value: torch.Tensor) -> None:
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name)
    module._parameters[leaf] = torch.nn.Parameter(value, requires_grad=False)


def copy_converted(source: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Copy a memory-mapped tensor to `device`/`dtype` in chunks, releasing each source chunk's pages
    once copied, so a load never holds more than one chunk of the source format at a time."""
    out = torch.empty(source.shape, dtype=dtype, device=device)
    rows = source.shape[0] if source.dim() else 1
    row_bytes = max(1, source.numel() * source.element_size() // max(rows, 1))
    step = max(1, COPY_CHUNK_BYTES // row_bytes)
    if source.dim() == 0:
        out.copy_(source)
        return out
    for start in range(0, rows, step):
        chunk = source[start:start + step]
        out[start:start + step].copy_(chunk)
        release_pages(chunk)
    return out


# --- reading checkpoint files -------------------------------------------------------------------

def weight_files(path: Path) -> list[Path]:
    """The weight files of a checkpoint directory, in the order upstream names them."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = path / index_name
        if index.exists():
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            return [path / name for name in sorted(set(weight_map.values()))]
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (path / single).exists():
            return [path / single]
    raise ModelNotFound(f"No weights in {path}: expected model.safetensors, pytorch_model.bin or a "
                        "sharded index. The download is incomplete; run the download command again.")


def iter_checkpoint_tensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name, tensor) for every stored tensor; tensors are memory-mapped, not read."""
    for file in weight_files(path):
        if not file.exists():
            raise ModelNotFound(f"{file} is listed in the index but missing: the download is incomplete.")
        reader = _mapped_safetensors if file.suffix == ".safetensors" else _mapped_torch_bin
        yield from reader(file)


def _mapped_torch_bin(file: Path) -> Iterator[tuple[str, torch.Tensor]]:
    try:
        state = torch.load(file, map_location="cpu", mmap=True, weights_only=True)
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise ModelNotFound(f"{file} could not be read ({type(exc).__name__}: {exc}). It may be "
                            "truncated; delete it and run the download command again.") from None
    yield from state.items()


def _mapped_safetensors(file: Path) -> Iterator[tuple[str, torch.Tensor]]:
    # safetensors' own reader copies every tensor out of its private mapping, which keeps the
    # whole file resident until closed; a plain mapping lets copy_converted release pages as it goes.
    with file.open("rb") as handle:
        header_len = struct.unpack("<Q", handle.read(8))[0]
        header = json.loads(handle.read(header_len))
    size = file.stat().st_size
    storage = cast(torch.UntypedStorage, torch.UntypedStorage.from_file(str(file), shared=False, nbytes=size))
    base = torch.empty(0, dtype=torch.uint8).set_(storage)
    data_start = 8 + header_len
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _SAFETENSORS_DTYPES:
            raise ModelNotFound(f"{file}: tensor {name} has dtype {info['dtype']}, not bf16/fp16/fp32.")
        begin, end = info["data_offsets"]
        raw = base[data_start + begin:data_start + end]
        yield name, raw.view(_SAFETENSORS_DTYPES[info["dtype"]]).view(info["shape"])


_MADV_DONTNEED = 4
_libc = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform.startswith("linux") else None


def release_pages(tensor: torch.Tensor) -> None:
    """Drop the resident pages of a read-only file mapping (they are re-read if touched again)."""
    if _libc is None or tensor.device.type != "cpu":
        return
    start = tensor.data_ptr()
    end = start + tensor.numel() * tensor.element_size()
    first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
    last = end // mmap.PAGESIZE * mmap.PAGESIZE
    if last > first:
        _libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_DONTNEED)


def return_free_heap() -> None:
    """Give the C heap's free memory back to the system (glibc's malloc_trim). Freed tensors smaller than
    malloc's adaptive mmap threshold stay in the heap otherwise, so the process would look as big as
    before, though the next load reuses that memory."""
    trim = getattr(_libc, "malloc_trim", None) if _libc is not None else None
    if trim is not None:
        trim(0)


def _load_remote_code_model(path: Path, device: torch.device, dtype: torch.dtype):
    """Only on the user's explicit request: run the modeling code shipped with the checkpoint."""
    from transformers import AutoModelForCausalLM

    log.warning("trust_remote_code=True: executing the Python code shipped in %s", path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=True).to(device).eval()
    return model, model.config._attn_implementation or "eager"
