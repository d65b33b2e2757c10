"""Settings declared once (minicpm_core.settings): each flag and its environment variable reach the
setting, a flag beats its variable, a bad value is one clear message, and the CLIs' --help agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from minicpm_core.errors import InvalidRequest
from minicpm_core.settings import (
    PROGRAMS, AccessSettings, ApiSettings, AppSettings, DownloadCliSettings, env_of, flag_of, help_of, resolve,
)

ROOT = Path(__file__).resolve().parent.parent

# Every setting: its environment variable (README, .ci and the tests use these names), a value that is
# not its default as typed on the command line / in the environment, and that value as the setting holds it.
TABLE = {
    "model": ("MINICPM_MODEL", "/models/x", "/models/x"),
    "dtype": ("MINICPM_DTYPE", "float16", "float16"),
    "device": ("MINICPM_DEVICE", "cpu", "cpu"),
    "cache_dir": ("MINICPM_CACHE_DIR", "/data/models", "/data/models"),
    "demo": ("MINICPM_DEMO", None, True),
    "demo_family": ("MINICPM_DEMO_FAMILY", "minicpm5", "minicpm5"),
    "trust_remote_code": (None, None, True),
    "max_concurrent": ("MINICPM_MAX_CONCURRENT", "3", 3),
    "max_queue": ("MINICPM_MAX_QUEUE", "0", 0),
    "backend": ("MINICPM_BACKEND", "openai", "openai"),
    "base_url": ("MINICPM_BASE_URL", "http://127.0.0.1:1/v1", "http://127.0.0.1:1/v1"),
    "api_key": ("MINICPM_API_KEY", "k3y", "k3y"),
    "remote_model": ("MINICPM_REMOTE_MODEL", "other", "other"),
    "host": ("MINICPM_HOST", "127.0.0.1", "127.0.0.1"),
    "port": ("MINICPM_PORT", "8123", 8123),
    "served_model_name": (None, "served", "served"),
    "log_prompts": (None, None, True),
    "model_id": (None, "Owner/Name", "Owner/Name"),
    "allow_open": ("MINICPM_ALLOW_OPEN", None, True),
}
ENV_TRUE = "1"  # what README tells users to set for an on/off variable


def settings_of(program):
    """(group attribute, field name, field) for every setting of a program."""
    return [(group_name, name, field) for group_name, group in program.groups().items()
            for name, field in group.model_fields.items()]


CASES = [(program, group_name, name) for program in PROGRAMS for group_name, name, _ in settings_of(program)]
CASE_IDS = [f"{program.__name__}.{name}" for program, _, name in CASES]
# Settings with an environment variable; of those, the ones whose flag takes a value (an on-only flag's
# variable can only say the same as the flag, or off).
ENV_CASES = [case for case in CASES if TABLE[case[2]][0] is not None]
VALUED_ENV_CASES = [case for case in ENV_CASES if TABLE[case[2]][1] is not None]


def ids(cases):
    return [f"{program.__name__}.{name}" for program, _, name in cases]


def argv_for(program, name: str, typed: str | None) -> list[str]:
    group_name = next(g for g, n, _ in settings_of(program) if n == name)
    field = program.groups()[group_name].model_fields[name]
    if (field.json_schema_extra or {}).get("positional"):
        return [typed]
    return [flag_of(name)] if typed is None else [flag_of(name), typed]


def test_the_table_covers_every_setting_and_names_its_variable():
    declared = {name: env_of(field) for program in PROGRAMS for _, name, field in settings_of(program)}
    declared["allow_open"] = env_of(AccessSettings.model_fields["allow_open"])
    assert {name: env for name, (env, _, _) in TABLE.items()} == declared


@pytest.mark.parametrize("program, group_name, name", CASES, ids=CASE_IDS)
def test_a_flag_reaches_its_setting(program, group_name, name):
    _, typed, expected = TABLE[name]
    settings = program.parse(argv_for(program, name, typed), environ={})
    assert getattr(getattr(settings, group_name), name) == expected


@pytest.mark.parametrize("program, group_name, name", ENV_CASES, ids=ids(ENV_CASES))
def test_an_environment_variable_reaches_its_setting(program, group_name, name):
    env, typed, expected = TABLE[name]
    settings = program.parse([], environ={env: ENV_TRUE if typed is None else typed})
    assert getattr(getattr(settings, group_name), name) == expected
    default = program.parse([], environ={env: ""})  # an empty variable counts as unset
    assert getattr(getattr(default, group_name), name) == program.groups()[group_name].model_fields[name].default


@pytest.mark.parametrize("program, group_name, name", VALUED_ENV_CASES, ids=ids(VALUED_ENV_CASES))
def test_a_flag_beats_its_environment_variable(program, group_name, name):
    env, typed, expected = TABLE[name]
    field = program.groups()[group_name].model_fields[name]
    other = {"dtype": "bfloat16", "backend": "local", "max_concurrent": "2", "max_queue": "5", "port": "9"}.get(
        name, "from-env")
    settings = program.parse(argv_for(program, name, typed), environ={env: other})
    assert getattr(getattr(settings, group_name), name) == expected != field.default


def test_on_off_variables_read_the_usual_words():
    for word, expected in [("1", True), ("true", True), ("YES", True), ("on", True), ("0", False), ("false", False),
                           ("no", False), ("off", False)]:
        assert resolve(AccessSettings, environ={"MINICPM_ALLOW_OPEN": word}).allow_open is expected, word
        assert AppSettings.parse([], environ={"MINICPM_DEMO": word}).model.demo is expected, word


BAD_VALUES = [
    (ApiSettings, ["--max-queue", "-1"], {}, ["--max-queue", "-1", "greater than or equal to 0"]),
    (ApiSettings, ["--max-concurrent", "0"], {}, ["--max-concurrent", "greater than or equal to 1"]),
    (ApiSettings, ["--port", "http"], {}, ["--port", "'http'", "valid integer"]),
    (ApiSettings, ["--port", "70000"], {}, ["--port", "65535"]),
    (ApiSettings, [], {"MINICPM_PORT": "x"}, ["MINICPM_PORT", "--port", "Fix or unset MINICPM_PORT"]),
    (AppSettings, ["--dtype", "fp8"], {}, ["--dtype", "'fp8'", "'auto', 'bfloat16', 'float16' or 'float32'"]),
    (AppSettings, [], {"MINICPM_DTYPE": "fp8"}, ["MINICPM_DTYPE", "'bfloat16'", "Fix or unset MINICPM_DTYPE"]),
    (AppSettings, [], {"MINICPM_MAX_QUEUE": "many"}, ["MINICPM_MAX_QUEUE", "'many'", "valid integer"]),
    (AppSettings, [], {"MINICPM_DEMO": "maybe"}, ["MINICPM_DEMO", "'maybe'", "use 1, true, yes, on or 0"]),
    (AppSettings, ["--backend", "vllm"], {}, ["--backend", "'local' or 'openai'"]),
    (AppSettings, [], {"MINICPM_BACKEND": "vllm"}, ["MINICPM_BACKEND", "'local' or 'openai'"]),
]


@pytest.mark.parametrize("program, argv, environ, words", BAD_VALUES)
def test_a_bad_value_is_one_message_naming_it_and_what_is_accepted(program, argv, environ, words):
    with pytest.raises(InvalidRequest) as info:
        program.parse(argv, environ=environ)
    assert info.value.code == "bad_setting"
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("argv", [["--max-queue"], ["--help"], ["-h", "--demo"], ["--server.port", "1"]])
def test_the_app_never_exits_on_its_flags(argv):
    """Inside a Streamlit run a SystemExit would end the server: usage errors raise InvalidRequest,
    --help and other programs' flags are ignored."""
    try:
        AppSettings.parse(argv, environ={}, ignore_unknown=True)
    except InvalidRequest as exc:
        assert "--max-queue" in str(exc) and "expected one argument" in str(exc)


def test_a_bad_variable_shows_an_error_page_in_the_app_not_a_traceback(use_local_model, tmp_path, monkeypatch):
    use_local_model(tmp_path / "model", tmp_path / "data")
    monkeypatch.setenv("MINICPM_MAX_QUEUE", "many")
    at = AppTest.from_file(str(ROOT / "chat_app.py"), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("MINICPM_MAX_QUEUE" in e.value and "'many'" in e.value for e in at.error)
    assert not at.chat_input


def cli_help(module: str) -> str:
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env={"PATH": "", "COLUMNS": "100"})
    assert result.returncode == 0, result.stderr
    return squeezed(result.stdout)


def squeezed(text: str) -> str:
    """Without whitespace: argparse wraps help lines (at hyphens too)."""
    return "".join(text.split())


def test_the_clis_help_lists_their_flags_and_the_shared_ones_alike():
    helps = {ApiSettings: cli_help("minicpm_core.api"), DownloadCliSettings: cli_help("minicpm_core.download"),
             AppSettings: squeezed(AppSettings.parser().format_help())}
    for program, text in helps.items():
        for _, name, field in settings_of(program):
            shown = name.upper() if (field.json_schema_extra or {}).get("positional") else flag_of(name)
            assert shown in text, (program.__name__, name)
            assert squeezed(help_of(field)) in text, (program.__name__, name)  # one text, wherever it is
    shared = {"--cache-dir", "--api-key", "--model", "--max-queue"}
    assert all(flag in helps[ApiSettings] and flag in helps[AppSettings] for flag in shared)
    assert "--cache-dir" in helps[DownloadCliSettings] and "MINICPM_CACHE_DIR" in helps[DownloadCliSettings]


def test_a_bad_value_reads_in_chinese_too():
    from ui import i18n

    with pytest.raises(InvalidRequest) as info:
        AppSettings.parse([], environ={"MINICPM_MAX_QUEUE": "many"})
    text = i18n.ERRORS_ZH[info.value.code].format(**info.value.details)
    assert "MINICPM_MAX_QUEUE" in text and "'many'" in text
