"""Getting a checkpoint of a supported family (MiniCPM-2B by default, MiniCPM5) onto disk, and telling a
complete checkpoint directory from an incomplete one.

    python -m minicpm_core.download [MODEL_ID] [--cache-dir DIR]

downloads from ModelScope, as the seed tutorial does, into `{cache_dir}/{Owner}/{Name}` (by default
/root/autodl-tmp/OpenBMB/MiniCPM-2B-sft-fp32). modelscope shows progress and skips files already there,
so rerunning the command resumes. Every failure is one message that says what failed, where, and the
command that fixes it; never a traceback.

This module does not load models: `check_model_dir` only looks at which files are present.
`start_or_follow` runs a download in a background thread (the app's buttons), one per target folder.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from pathlib import Path

from .errors import InvalidRequest, MiniCPMError, ModelNotFound
from .families import FAMILIES
from .paths import DEFAULT_CACHE_DIR, DEFAULT_MODEL_ID
from .settings import DownloadCliSettings

MODEL_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
SINGLE_WEIGHT_FILES = ("pytorch_model.bin", "model.safetensors")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
# What a checkpoint of any supported family needs for its tokenizer (one of these files).
TOKENIZER_FILES = tuple(dict.fromkeys(name for family in FAMILIES for name in family.tokenizer_files))

# modelscope's defaults retry a failed file listing for minutes when packets are dropped; a user
# waiting at a terminal is better served by a clear error sooner. Values already set in the
# environment win. (Per-file download retries stay at modelscope's default: they save 10 GB runs.)
MODELSCOPE_NETWORK_DEFAULTS = {
    "MODELSCOPE_API_CONNECT_TIMEOUT": "10",
    "MODELSCOPE_API_MAX_RETRIES": "2",
    "MODELSCOPE_REPO_TREE_PAGE_MAX_ATTEMPTS": "2",
}


def validate_model_id(model_id: str) -> str:
    """Return `model_id` if it looks like `Owner/Name`, else raise InvalidRequest saying what is expected."""
    if not isinstance(model_id, str) or not MODEL_ID_PATTERN.fullmatch(model_id):
        raise InvalidRequest(
            f"{model_id!r} is not a model id: expected Owner/Name, e.g. {DEFAULT_MODEL_ID} "
            f"(or {', '.join(known_model_ids()[1:3])}).",
            param="model_id",
        )
    return model_id


def known_model_ids() -> list[str]:
    """The published checkpoints of every supported family, the default model first."""
    return [model.id for family in FAMILIES for model in family.known_models]


def default_model_dir(model_id: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where `download_model(model_id, cache_dir)` puts the files: `{cache_dir}/{Owner}/{Name}`.

    `cache_dir` None means DEFAULT_CACHE_DIR, here and in every function of this module.
    """
    owner, name = validate_model_id(model_id).split("/")
    return Path(cache_dir or DEFAULT_CACHE_DIR).expanduser() / owner / name


def download_command(model_id: str = DEFAULT_MODEL_ID, cache_dir: str | os.PathLike | None = None) -> str:
    return f"python -m minicpm_core.download {model_id} --cache-dir {cache_dir or DEFAULT_CACHE_DIR}"


def _looks_like_download_place(path: Path) -> bool:
    """`{cache}/{Owner}/{MiniCPM…}`, where the download command for that id would put it."""
    return "minicpm" in path.name.lower() and MODEL_ID_PATTERN.fullmatch(f"{path.parent.name}/{path.name}") is not None


def _fix_command(path: Path) -> str:
    """The command that fills `path` when it is a download place, else the default download."""
    if _looks_like_download_place(path):
        return download_command(f"{path.parent.name}/{path.name}", path.parent.parent)
    return download_command()


def _fix_for(path: Path) -> str:
    if _looks_like_download_place(path):
        return f"Download it with:\n    {_fix_command(path)}"
    return (f"Download MiniCPM-2B with:\n    {_fix_command(path)}\n"
            f"and use {default_model_dir(DEFAULT_MODEL_ID)}, or copy a complete download into {path}.")


def missing_files(path: str | os.PathLike) -> list[str]:
    """What a checkpoint directory lacks, one entry per missing piece (empty when complete).

    Every family needs config.json, the weights (all shards its index lists) and a tokenizer; a
    family may need more (MiniCPM5: its chat template), asked of the families by the config's layout.
    """
    path = Path(path)
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any(_nonempty(path / name) for name in SINGLE_WEIGHT_FILES):
        indexes = [path / name for name in INDEX_FILES if (path / name).is_file()]
        if not indexes:
            missing.append(f"weights ({' or '.join(SINGLE_WEIGHT_FILES)}, or a sharded "
                           f"{' / '.join(INDEX_FILES)} with its shards)")
        else:
            missing += _missing_shards(indexes[0])
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        missing.append(f"tokenizer ({' or '.join(TOKENIZER_FILES)})")
    config = _readable_config(path)
    for family in FAMILIES:
        missing += family.missing_files(config, path) if config is not None else []
    return missing


def _readable_config(path: Path) -> dict | None:
    """config.json as a dict, or None if it is missing or damaged (the loader explains that)."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def _nonempty(file: Path) -> bool:
    return file.is_file() and file.stat().st_size > 0


def _missing_shards(index: Path) -> list[str]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return [f"a readable {index.name} (it is damaged)"]
    return [f"weight shard {shard} (listed in {index.name})" for shard in shards if not _nonempty(index.parent / shard)]


def _bullets(items: list[str]) -> str:
    return "".join(f"  - {item}\n" for item in items)


def check_model_dir(path: str | os.PathLike) -> None:
    """Raise ModelNotFound unless `path` holds a complete checkpoint (of a family's layout).

    Complete means config.json, weights (a single file, or an index whose shards all exist) and a
    tokenizer. The message names the path, lists exactly what is missing and gives the fix command.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelNotFound(f"No model checkpoint at {path}: the directory does not exist.\n{_fix_for(path)}",
                            code="model_dir_missing", path=path, command=_fix_command(path))
    if not path.is_dir():
        raise ModelNotFound(f"{path} is a file, not a checkpoint directory.\n{_fix_for(path)}")
    missing = missing_files(path)
    if missing:
        listed = _bullets(missing)
        raise ModelNotFound(
            f"The model checkpoint at {path} is incomplete. Missing:\n{listed}"
            "If a download was interrupted, running it again resumes it. " + _fix_for(path),
            code="model_dir_incomplete", path=path, missing=listed, command=_fix_command(path))


def resolve_source(source: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """Turn what a user typed into a checked checkpoint directory.

    An existing directory is used as it is; an `Owner/Name` id means `default_model_dir(id, cache_dir)`,
    which must already be downloaded. Anything else raises ModelNotFound with the download command.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        check_model_dir(path)
        return path
    text = str(source)
    if MODEL_ID_PATTERN.fullmatch(text):
        target = default_model_dir(text, cache_dir)
        downloaded = target.is_dir()
        missing = _bullets(missing_files(target)) if downloaded else ""
        if downloaded and not missing:
            return target
        what = "is incomplete" if downloaded else "has not been downloaded"
        command = download_command(text, cache_dir)
        raise ModelNotFound(
            f"{text} {what} (looked in {target}).\n{missing}Download it with:\n    {command}",
            code="model_incomplete" if downloaded else "model_not_downloaded", model=text, target=target,
            missing=missing, command=command)
    check_model_dir(path)  # a path that does not exist: the message says so and how to fix it
    return path


def download_model(model_id: str = DEFAULT_MODEL_ID, cache_dir: str | os.PathLike | None = None) -> Path:
    """Download `model_id` from ModelScope into `default_model_dir(model_id, cache_dir)` and check it.

    Files already present are skipped. Raises InvalidRequest for a malformed id and ModelNotFound, with
    the retry command, when the download fails.
    """
    target = default_model_dir(model_id, cache_dir)
    retry = download_command(model_id, cache_dir)
    for name, value in MODELSCOPE_NETWORK_DEFAULTS.items():
        os.environ.setdefault(name, value)
    try:
        from modelscope import snapshot_download
    except ImportError:
        raise ModelNotFound(f"modelscope is not installed. Install it with `pip install modelscope`, then run:\n"
                            f"    {retry}") from None
    created = [d for d in (target, target.parent, target.parent.parent) if not d.exists()]  # deepest first
    try:
        # local_dir pins the seed's flat layout; recent modelscope would otherwise use models/Owner--Name/snapshots/.
        result = Path(snapshot_download(model_id, cache_dir=str(target.parent.parent), revision="master",
                                        local_dir=str(target)))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # modelscope raises many types (network, HTTP, hub errors): all mean "did not download"
        for directory in created:  # do not leave empty directories that look like a model
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
        usable = ("\nThe files already there look complete, so you can also use them as they are."
                  if target.is_dir() and not missing_files(target) else "")
        raise ModelNotFound(
            f"Could not download {model_id} from ModelScope into {target}: {_reason(exc)}.\n"
            f"Check the network connection or proxy (HTTPS_PROXY), then retry (files already downloaded are "
            f"kept):\n    {retry}\n"
            f"Or copy an existing download of {model_id} into {target}.{usable}",
            code="download_failed", model=model_id, target=target, reason=_reason(exc), command=retry,
        ) from exc
    check_model_dir(result)
    return result


PROGRESS_EVERY_S = 1.0  # how often a page following a BackgroundDownload reports its size on disk


class BackgroundDownload(threading.Thread):
    """One download per target folder per process, whoever started it; it carries on if that caller goes
    away, and a later caller follows it (start_or_follow) instead of starting a second one."""

    def __init__(self, model_id: str, cache_dir: str | os.PathLike | None):
        super().__init__(name=f"download {model_id}", daemon=True)
        self.model_id, self.cache_dir = model_id, cache_dir
        self.target = default_model_dir(model_id, cache_dir)
        self.path: Path | None = None
        self.error: MiniCPMError | None = None

    def run(self) -> None:
        try:
            self.path = download_model(self.model_id, self.cache_dir)
        except MiniCPMError as exc:
            self.error = exc

    def bytes_on_disk(self) -> int:
        try:
            return sum(f.stat().st_size for f in self.target.rglob("*") if f.is_file())
        except OSError:
            return 0


_downloads: dict[Path, BackgroundDownload] = {}
_downloads_lock = threading.Lock()


def start_or_follow(model_id: str, cache_dir: str | os.PathLike | None) -> BackgroundDownload:
    """The download of `model_id` into `cache_dir` running now, or a new one started."""
    target = default_model_dir(model_id, cache_dir)
    with _downloads_lock:
        job = _downloads.get(target)
        if job is None or not job.is_alive():
            job = _downloads[target] = BackgroundDownload(model_id, cache_dir)
            job.start()
    return job


def latest_download(model_id: str, cache_dir: str | os.PathLike | None) -> BackgroundDownload | None:
    """The last download of `model_id` into `cache_dir` this process started (running or ended), if any."""
    with _downloads_lock:
        return _downloads.get(default_model_dir(model_id, cache_dir))


def _reason(exc: BaseException) -> str:
    """The root cause in one short line ("[Errno -2] Name or service not known"), not the wrapper chain."""
    root, seen = exc, set()
    while (parent := root.__cause__ or root.__context__) is not None and id(root) not in seen:
        seen.add(id(root))
        root = parent
    text = str(root).strip().splitlines()[0] if str(root).strip() else type(root).__name__
    if root is not exc:
        text = f"{type(root).__name__}: {text}"
    return text if len(text) <= 300 else text[:297] + "..."


def main(argv: list[str] | None = None) -> int:
    try:
        args = DownloadCliSettings.parse(argv).download
    except InvalidRequest as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        path = download_model(args.model_id, args.cache_dir)
    except InvalidRequest as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MiniCPMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        retry = download_command(args.model_id, args.cache_dir)
        print(f"\nInterrupted. Run the same command again to resume:\n    {retry}", file=sys.stderr)
        return 130
    print(f"{args.model_id} is complete in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
