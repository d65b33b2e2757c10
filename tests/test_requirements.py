"""`pip install -r requirements.txt` alone installs everything the app and the API import at run time.

The runtime files (chat_app.py, app_pages/, ui/, minicpm_core/) are parsed, not imported: every
`import` statement counts, including those inside functions, since a function that runs only on one
page or one request would otherwise fail only there. Each third-party module is mapped to the
distributions that provide it (`importlib.metadata.packages_distributions()`, in this environment),
and one of them must be a requirement line of requirements.txt: a dependency of a dependency is not
enough (openai 3 stopped bringing httpx, and the app failed on a fresh machine).

Imports of optional packages, guarded by `except ImportError` or probed with `find_spec`, are exempt
only when KNOWN_OPTIONAL names them with the reason.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_PATHS = ("chat_app.py", "app_pages", "ui", "minicpm_core")
DEV_PATHS = ("tests", "bench", "testkit")  # their tools come from requirements-dev.txt, which includes requirements.txt
REQUIREMENTS = ROOT / "requirements.txt"
DEV_REQUIREMENTS = ROOT / "requirements-dev.txt"

# Modules the code uses only when they are installed; requirements.txt deliberately leaves them out.
KNOWN_OPTIONAL = {
    "flash_attn": "flash-attention is used when installed, else sdpa; it needs a CUDA toolchain to build "
                  "(README: `pip install flash-attn --no-build-isolation`, optional)",
}
_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


@dataclass(frozen=True)
class Import:
    module: str  # the top-level name, as `packages_distributions()` keys it
    file: str
    line: int
    guarded: bool  # inside `try:` with an `except ImportError`, or a `find_spec("...")` probe


def normalize(name: str) -> str:
    """A distribution name per PEP 503, so `Foo_Bar`, `foo.bar` and `foo-bar` compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(text: str) -> set[str]:
    """The normalized distribution names that requirements.txt text lists (options and `-r` skipped)."""
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
        if match:
            names.add(normalize(match.group()))
    return names


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    caught = handler.type
    names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
    return any(isinstance(n, ast.Name) and n.id in _IMPORT_ERRORS for n in names)


def _guarded_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside a `try:` body whose handlers catch ImportError."""
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            guarded.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return guarded


def imports_in_source(source: str, file: str) -> list[Import]:
    """Every absolute import in `source`, plus `find_spec("name")` probes of optional modules."""
    tree = ast.parse(source, filename=file)
    guarded = _guarded_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "find_spec"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append(Import(node.args[0].value.split(".")[0], file, node.lineno, True))
            continue
        else:
            continue
        found += [Import(name.split(".")[0], file, node.lineno, id(node) in guarded) for name in names]
    return found


def python_files(paths: Iterable[str], root: Path = ROOT) -> list[Path]:
    files = []
    for name in paths:
        path = root / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def first_party(root: Path = ROOT) -> set[str]:
    """The project's own top-level names, and the helper modules tests and benchmarks import by name."""
    own = {p.stem if p.suffix == ".py" else p.name for p in (root / name for name in RUNTIME_PATHS + DEV_PATHS)}
    helpers = {p.stem for p in python_files(DEV_PATHS, root)}
    packages = {p.parent.name for p in python_files(DEV_PATHS, root) if p.name == "__init__.py"}
    return own | helpers | packages


def uncovered_imports(imports: Iterable[Import], requirements: set[str],
                      distributions: Mapping[str, list[str]], local: set[str],
                      optional: Mapping[str, str] = KNOWN_OPTIONAL) -> list[str]:
    """One line per third-party import that no requirement line covers, naming module, file and line."""
    problems = []
    for imp in imports:
        if imp.module in sys.stdlib_module_names or imp.module in local:
            continue
        if imp.guarded and imp.module in optional:
            continue
        providers = distributions.get(imp.module, [])
        if not providers:
            problems.append(f"{imp.file}:{imp.line}: `{imp.module}` is imported, but no installed distribution "
                            f"provides it: install it and add its distribution to requirements.txt")
        elif not requirements & {normalize(d) for d in providers}:
            problems.append(f"{imp.file}:{imp.line}: `{imp.module}` (distribution {' or '.join(sorted(set(providers)))}) "
                            f"is imported, but requirements.txt does not list it")
    return problems


def project_imports(paths: Iterable[str] = RUNTIME_PATHS) -> list[Import]:
    return [imp for path in python_files(paths)
            for imp in imports_in_source(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]


# --- the project ---------------------------------------------------------------------------------

def module_distributions() -> dict[str, list[str]]:
    """`packages_distributions()`, completed from each distribution's file list.

    Python 3.10's version reads only `top_level.txt`, which wheels built by hatchling, pdm or flit do
    not have (fastapi, pydantic, openai...); 3.11 infers the names from the files, as done here.
    """
    found = {name: list(dists) for name, dists in importlib.metadata.packages_distributions().items()}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        for file in dist.files or ():
            top = file.parts[0] if len(file.parts) > 1 else file.name.removesuffix(".py")
            if file.parts and not top.endswith((".dist-info", ".egg-info", ".data", ".pth")) \
                    and top.isidentifier() and name not in found.setdefault(top, []):
                found[top].append(name)
    return found


def test_every_runtime_import_is_a_direct_requirement():
    problems = uncovered_imports(project_imports(), requirement_names(REQUIREMENTS.read_text(encoding="utf-8")),
                                 module_distributions(), first_party())
    assert not problems, "\n".join(problems)


def test_every_test_and_bench_import_is_a_dev_or_runtime_requirement():
    listed = requirement_names(DEV_REQUIREMENTS.read_text(encoding="utf-8"))
    assert "-r requirements.txt" in DEV_REQUIREMENTS.read_text(encoding="utf-8")
    listed |= requirement_names(REQUIREMENTS.read_text(encoding="utf-8"))
    problems = uncovered_imports(project_imports(DEV_PATHS), listed, module_distributions(),
                                 first_party())
    assert not problems, "\n".join(problems).replace("requirements.txt", "requirements-dev.txt")


def test_known_optional_modules_are_really_optional_in_the_code():
    """Each exemption is still needed and still guarded, so the list cannot hide a plain import."""
    imports = project_imports()
    for module, reason in KNOWN_OPTIONAL.items():
        uses = [imp for imp in imports if imp.module == module]
        assert uses, f"{module} is listed as optional ({reason}) but nothing imports it: drop it from KNOWN_OPTIONAL"
        unguarded = [f"{imp.file}:{imp.line}" for imp in uses if not imp.guarded]
        assert not unguarded, f"{module} is imported without an ImportError guard at {', '.join(unguarded)}"


def test_the_scan_sees_the_modules_the_app_is_built_on():
    modules = {imp.module for imp in project_imports()}
    assert {"streamlit", "torch", "transformers", "fastapi", "openai", "httpx"} <= modules


# --- the checker itself --------------------------------------------------------------------------

DISTRIBUTIONS = {"httpx": ["httpx"], "openai": ["openai"], "yaml": ["PyYAML"], "flash_attn": ["flash_attn"]}


def check(source: str, requirements: str) -> list[str]:
    return uncovered_imports(imports_in_source(source, "app.py"), requirement_names(requirements),
                             DISTRIBUTIONS, local={"minicpm_core"})


def test_an_import_inside_a_function_that_no_requirement_covers_is_reported():
    source = "import os\nimport openai\n\ndef client():\n    import httpx\n    return httpx\n"
    assert check(source, "openai>=1.40  # comment\n") == [
        "app.py:5: `httpx` (distribution httpx) is imported, but requirements.txt does not list it"]


def test_a_covered_import_is_not_reported_and_names_compare_per_pep_503():
    assert check("import yaml\nfrom httpx import Client\n", "pyyaml>=6\nHTTPX[http2]>=0.27,<1\n") == []
    assert check("import yaml\n", "PyYAML_extra\n") != []  # a different distribution is no cover


def test_a_module_no_installed_distribution_provides_is_reported():
    [problem] = check("import not_installed_anywhere.sub\n", "")
    assert "`not_installed_anywhere`" in problem and "no installed distribution" in problem


def test_requirement_files_options_and_includes_are_not_names():
    assert requirement_names("-r requirements.txt\n--index-url x\n# torch\ntorch>=2.6  # why\n\n") == {"torch"}


def test_stdlib_and_first_party_imports_are_not_reported():
    assert check("import json\nfrom minicpm_core.engine import Engine\nfrom . import x\n", "") == []


def test_a_known_optional_import_counts_only_when_guarded():
    guarded = "try:\n    import flash_attn\nexcept (ImportError, OSError):\n    flash_attn = None\n"
    probed = "import importlib.util\nok = importlib.util.find_spec('flash_attn') is not None\n"
    assert check(guarded, "") == [] and check(probed, "") == []
    assert check("import flash_attn\n", "") != []
    # A guard does not exempt a module that KNOWN_OPTIONAL does not name.
    assert check("try:\n    import yaml\nexcept ImportError:\n    yaml = None\n", "") != []
