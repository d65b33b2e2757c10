"""Every command-line flag and environment variable of the app, the API and the download CLI, declared once.

A setting is one pydantic field, written with `setting()`: its type and range, its default, its help,
and the environment variable it falls back to. Settings are grouped by concern (`ModelSettings`,
`RemoteSettings`, `ServerSettings`, `DownloadSettings`, `AccessSettings`); each program's settings
(`AppSettings`, `ApiSettings`, `DownloadCliSettings`) hold the groups it uses, and from them come its
argparse parser (one --help section per group) and its values:

    settings = ApiSettings.parse(argv)      # flag if given, else environment variable, else default
    settings.model.max_queue, settings.server.port

Every value is validated by the field's type. A bad one raises InvalidRequest naming the flag or the
variable and what is accepted; `parse` itself never exits (argparse's own usage errors aside, which
the app's `ignore_unknown` mode turns into InvalidRequest as well), so the Streamlit app can show it.

This module only declares and parses; loading models and starting servers is for the callers.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal, TypeVar, cast, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from .errors import InvalidRequest
from .paths import DEFAULT_CACHE_DIR, DEFAULT_DEMO_FAMILY, DEFAULT_MODEL_ID, DEMO_FAMILIES, model_name

DEFAULT_MAX_QUEUE = 32  # requests that may wait for a free slot; one more is refused (HTTP 429)
DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 6006  # the seed tutorial's port (autodl maps it to the outside)
BACKENDS = ("local", "openai")
DTYPES = ("auto", "bfloat16", "float16", "float32")
ALLOW_OPEN_ENV = "MINICPM_ALLOW_OPEN"  # AccessSettings; the API's warning names it


def setting(default: Any, help: str, *, env: str | None = None, flag: bool = True, positional: bool = False,
            **constraints: Any) -> Any:
    """One setting: `env` is its environment variable (None: none); `flag=False` makes it env-only,
    `positional` a positional argument; `constraints` are pydantic's (ge=, le=, ...)."""
    return Field(default, description=help, json_schema_extra={"env": env, "flag": flag, "positional": positional},
                 **constraints)


class SettingsGroup(BaseModel):
    """A --help section's worth of settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    title: ClassVar[str]


Group = TypeVar("Group", bound=SettingsGroup)

# Declared once, used by two groups each.
CacheDir = Annotated[str, setting(DEFAULT_CACHE_DIR, "the folder where model ids are looked up and downloaded, "
                                  "as Owner/Name", env="MINICPM_CACHE_DIR")]
ApiKey = Annotated[str | None, setting(None, "the OpenAI-compatible API's key: the app sends it to --base-url; the "
                                       "API server requires it of every client as 'Authorization: Bearer KEY' "
                                       "or 'x-api-key: KEY'", env="MINICPM_API_KEY")]


class ModelSettings(SettingsGroup):
    """Which model to load, where and how, and how many replies it serves at once."""

    title = "model"
    model: str = setting(DEFAULT_MODEL_ID, "local checkpoint directory or ModelScope id", env="MINICPM_MODEL")
    dtype: Literal[DTYPES] = setting("auto", "weights dtype", env="MINICPM_DTYPE")  # type: ignore[valid-type]
    device: str = setting("auto", "auto, cuda, cuda:N or cpu", env="MINICPM_DEVICE")
    cache_dir: CacheDir
    demo: bool = setting(False, "run the tiny demo model that comes with the app (canned answers to a few "
                                "questions, no download) instead of MiniCPM-2B", env="MINICPM_DEMO")
    demo_family: Literal[DEMO_FAMILIES] = setting(  # type: ignore[valid-type]
        DEFAULT_DEMO_FAMILY, "which family's demo --demo runs; minicpm5 thinks before it answers (giving "
        "another than the default implies --demo)", env="MINICPM_DEMO_FAMILY")
    trust_remote_code: bool = setting(False, "execute the Python code shipped inside the checkpoint (off by default)")
    max_concurrent: int = setting(1, "replies generated at once; others wait in a fair queue",
                                  env="MINICPM_MAX_CONCURRENT", ge=1)
    max_queue: int = setting(DEFAULT_MAX_QUEUE, "requests that may wait for a free slot; more are refused "
                             "(HTTP 429) with a hint of when to retry", env="MINICPM_MAX_QUEUE", ge=0)

    @property
    def name(self) -> str:
        """What the model these settings load is called (paths.model_name)."""
        return model_name(self.model, self.demo_family if self.demo else None)

    @model_validator(mode="before")
    @classmethod
    def _demo_family_implies_demo(cls, values: Any) -> Any:
        """`--demo-family minicpm5` alone is enough: it can only mean the demo."""
        if isinstance(values, dict) and values.get("demo_family", DEFAULT_DEMO_FAMILY) != DEFAULT_DEMO_FAMILY:
            values = {"demo": True, **values}
        return values


class RemoteSettings(SettingsGroup):
    """The app's backend: this process's model, or an OpenAI-compatible server."""

    title = "backend"
    backend: Literal[BACKENDS] = setting("local", "local: load the model in this process; openai: use an "  # type: ignore[valid-type]
                                         "OpenAI-compatible server", env="MINICPM_BACKEND")
    base_url: str | None = setting(None, "the server's OpenAI base URL, e.g. http://127.0.0.1:6006/v1",
                                   env="MINICPM_BASE_URL")
    api_key: ApiKey
    remote_model: str | None = setting(None, "model name on that server (default: its first model)",
                                       env="MINICPM_REMOTE_MODEL")


class ServerSettings(SettingsGroup):
    """Where the HTTP API listens and what it logs."""

    title = "server"
    host: str = setting(DEFAULT_HOST, "address to listen on", env="MINICPM_HOST")
    port: int = setting(DEFAULT_PORT, "port", env="MINICPM_PORT", ge=0, le=65535)
    api_key: ApiKey
    served_model_name: str | None = setting(None, "model name reported by /v1/models (default: the --model "
                                            "value, a local path by its directory's name)")
    log_prompts: bool = setting(False, "also log prompt and reply text (off: only token counts and timings)")


class DownloadSettings(SettingsGroup):
    """What `python -m minicpm_core.download` fetches, and where to."""

    title = "download"
    model_id: str = setting(DEFAULT_MODEL_ID, "ModelScope id, Owner/Name", positional=True)
    cache_dir: CacheDir


class AccessSettings(SettingsGroup):
    """Who may reach the app (read on every run: it is no flag)."""

    title = "access"
    allow_open: bool = setting(False, "serve every interface with no access token (app) or API key (API) when "
                                      "no password or key is given",
                               env=ALLOW_OPEN_ENV, flag=False)


# --- resolving: flag > environment > default --------------------------------------------------------

def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def _extra(field: FieldInfo, key: str) -> Any:
    """What `setting()` recorded about a field: "env", "flag" or "positional"."""
    extra = field.json_schema_extra
    return extra.get(key) if isinstance(extra, dict) else None


def env_of(field: FieldInfo) -> str | None:
    return _extra(field, "env")


def resolve(group: type[Group], flags: Mapping[str, Any] | None = None,
            environ: Mapping[str, str] | None = None) -> Group:
    """The group's values: `flags` (field name -> value, only those given) over the environment
    (an empty variable counts as unset) over the defaults. InvalidRequest names a bad value's source."""
    flags = flags or {}
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    from_env: set[str] = set()
    for name, field in group.model_fields.items():
        env = env_of(field)
        if name in flags:
            values[name] = flags[name]
        elif env and environ.get(env, "").strip():
            values[name] = environ[env].strip()
            from_env.add(name)
    try:
        return group.model_validate(values)
    except ValidationError as exc:
        raise _bad_value(group, exc, from_env) from None


def _bad_value(group: type[SettingsGroup], exc: ValidationError, from_env: set[str]) -> InvalidRequest:
    """The first bad value as one message: where it came from, what is wrong, what to do."""
    error = exc.errors(include_url=False)[0]
    name = str(error["loc"][0])
    field = group.model_fields[name]
    flag = name.upper() if _extra(field, "positional") else flag_of(name)
    if name in from_env:
        where = env_of(field)
        source, fix = f"{where} (the environment variable behind {flag})", f"Fix or unset {where}"
    else:
        where = source = flag
        fix = f"Give {flag} a valid value, or leave it out"
    reason = error["msg"] + (" (use 1, true, yes, on or 0, false, no, off)" if field.annotation is bool else "")
    default = "" if field.default is None else f" (default {_shown(field.default)})"
    return InvalidRequest(f"Bad value {error.get('input')!r} for {source}: {reason}. {fix}{default}.",
                          param=name, code="bad_setting", setting=where, value=error.get("input"),
                          reason=reason)


def _shown(default: Any) -> str:
    return {False: "off", True: "on"}.get(default, str(default)) if isinstance(default, bool) else str(default)


# --- programs: their groups, parser and parse() ---------------------------------------------------

class ProgramSettings(BaseModel):
    """One program's settings, one field per group (its type a SettingsGroup)."""

    model_config = ConfigDict(frozen=True)
    prog: ClassVar[str]
    description: ClassVar[str]

    @classmethod
    def groups(cls) -> dict[str, type[SettingsGroup]]:
        return {name: cast("type[SettingsGroup]", field.annotation) for name, field in cls.model_fields.items()}

    @classmethod
    def parser(cls, *, exit_on_error: bool = True) -> argparse.ArgumentParser:
        """The argparse parser of this program's flags, one section per group; unset flags stay absent
        from its result (default SUPPRESS), so that `parse` can tell them from given ones. Without
        `exit_on_error` it has no --help either: nothing in it may end the process."""
        parser = argparse.ArgumentParser(prog=cls.prog, description=cls.description, allow_abbrev=False,
                                         add_help=exit_on_error, exit_on_error=exit_on_error)
        for group_name, group in cls.groups().items():
            section = parser.add_argument_group(group.title)
            for name, field in group.model_fields.items():
                if _extra(field, "flag"):
                    _add_argument(section, f"{group_name}.{name}", name, field)
        return parser

    @classmethod
    def parse(cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None, *,
              ignore_unknown: bool = False):
        """Parse `argv` (default sys.argv[1:]) with the environment as fallback. `ignore_unknown` is the
        Streamlit app's mode: flags of other programs are skipped and usage errors raise InvalidRequest
        instead of exiting."""
        parser = cls.parser(exit_on_error=not ignore_unknown)
        if ignore_unknown:
            try:
                args, _ = parser.parse_known_args(None if argv is None else list(argv))
            except argparse.ArgumentError as exc:
                raise InvalidRequest(f"Bad command-line option: {exc}. The flags are listed in the README "
                                     "(App options).", code="bad_option", setting=exc.argument_name,
                                     reason=exc.message) from None
        else:
            args = parser.parse_args(None if argv is None else list(argv))
        given = vars(args)
        groups = {}
        for group_name, group in cls.groups().items():
            prefix = f"{group_name}."
            flags = {key[len(prefix):]: value for key, value in given.items() if key.startswith(prefix)}
            groups[group_name] = resolve(group, flags, environ)
        return cls(**groups)


def help_of(field: FieldInfo) -> str:
    """A setting's --help line: its description, then its variable and default."""
    env = env_of(field)
    is_flag = field.annotation is bool  # store_true: off unless given
    notes = [f"env {env}=1" if is_flag else f"env {env}"] if env else []
    if not is_flag and field.default not in (None, ""):
        notes.append(f"default {_shown(field.default)}")
    return (field.description or "") + (f" ({'; '.join(notes)})" if notes else "")


def _add_argument(section, dest: str, name: str, field: FieldInfo) -> None:
    help_text = help_of(field).replace("%", "%%")  # argparse %-formats help strings
    if _extra(field, "positional"):
        section.add_argument(dest, nargs="?", default=argparse.SUPPRESS, metavar=name.upper(), help=help_text)
    elif field.annotation is bool:
        section.add_argument(flag_of(name), dest=dest, action="store_true", default=argparse.SUPPRESS,
                             help=help_text)
    else:
        choices = get_args(field.annotation) if get_origin(field.annotation) is Literal else None
        metavar = "{" + ",".join(choices) + "}" if choices else name.upper()
        section.add_argument(flag_of(name), dest=dest, default=argparse.SUPPRESS, metavar=metavar, help=help_text)


class AppSettings(ProgramSettings):
    prog = "streamlit run chat_app.py --"
    description = "MiniCPM-2B Chat, the Streamlit app. Flags go after `--`."
    model: ModelSettings
    remote: RemoteSettings


class ApiSettings(ProgramSettings):
    prog = "python -m minicpm_core.api"
    description = "Serve MiniCPM-2B over HTTP: the seed tutorial's POST / and OpenAI's /v1/chat/completions."
    model: ModelSettings
    server: ServerSettings


class DownloadCliSettings(ProgramSettings):
    prog = "python -m minicpm_core.download"
    description = ("Download a MiniCPM-2B checkpoint from ModelScope into CACHE_DIR/Owner/Name "
                   "(resumable: files already there are skipped).")
    download: DownloadSettings


PROGRAMS: tuple[type[ProgramSettings], ...] = (AppSettings, ApiSettings, DownloadCliSettings)
