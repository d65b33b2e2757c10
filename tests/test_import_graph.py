"""The library's modules import each other without a circle (every import counts, a lazy one in a function
too): a circle means two modules that cannot be understood, or changed, one without the other."""

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "minicpm_core"


def module_name(path: Path) -> str:
    parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The library modules `path` imports: `from .x import y` means x.y if that is a module, else x."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1] + ([node.module] if node.module else [])
            else:
                base = [node.module or ""]
            target = ".".join(base)
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in known else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in known and name != module_name(path)}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = "open", stack.append(node)
        for child in sorted(graph[node]):
            if state.get(child) == "open":
                return stack[stack.index(child):] + [child]
            if child not in state and (cycle := visit(child)):
                return cycle
        state[node], _ = "done", stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def import_graph() -> dict[str, set[str]]:
    files = sorted(LIBRARY.rglob("*.py"))
    known = {module_name(path) for path in files}
    # a package's __init__ may gather its own modules; importing the package means importing them
    return {module_name(path): imported_modules(path, known) - ({module_name(path)} if path.name != "__init__.py"
                                                                else set()) for path in files}


def test_the_library_import_graph_has_no_circle():
    graph = import_graph()
    assert "minicpm_core.settings" in graph["minicpm_core.download"]  # the graph sees the library's imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_a_circle_is_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
