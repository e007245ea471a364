"""The import graph of minillm: acyclic, with arrows pointing one way.

    pipeline -> stages (sft, dpo, grpo, ...) -> train / evals -> model
             -> attention / rope / moe / loss -> config

Run it as a script to print the graph (every module and what it imports from
the package, function-level imports included):

    python tests/test_imports.py
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "minillm"

#: Lower layers must never import higher ones (a module may import its own layer).
LAYERS = [
    {"config", "loss", "validate"},
    {"attention", "rope", "moe", "cache"},
    {"model"},
    {"checkpoint", "data", "generate", "evals"},
    {"train"},
    {"pipeline"},
    {"zoo"},
    {"chat_cli"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def walk(tree: ast.AST):
    """``ast.walk`` minus ``if __name__ == "__main__":`` blocks: what a script does
    when run (``python -m minillm.chat`` starts ``chat_cli``) is not an import
    of the module by others, so it adds no edge to the graph."""
    todo = [tree]
    while todo:
        node = todo.pop()
        test = getattr(node, "test", None)
        if isinstance(node, ast.If) and isinstance(test, ast.Compare) \
                and isinstance(test.left, ast.Name) and test.left.id == "__name__":
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def imports_of(path: Path) -> set[str]:
    """The minillm modules a file imports (anywhere in it but a ``__main__``
    block, relative imports resolved)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    found = set()
    for node in walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("minillm")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.startswith("minillm"):
                found.add(target)
                # `from minillm import zoo` imports the module minillm.zoo
                found |= {f"{target}.{a.name}" for a in node.names
                          if (PACKAGE.parent / f"{target}.{a.name}".replace(".", "/")).with_suffix(".py").exists()}
    return {m for m in found if m != here}


def graph() -> dict[str, set[str]]:
    """module -> the package modules it imports. A submodule importing its own
    package's ``__init__`` is left out: that is how a package's front door
    re-exports its parts, not a dependency between concepts."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(path)
                   if m in modules and m != "minillm" and not name.startswith(m + ".")}
            for name, path in sorted(modules.items())}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in g:
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def layer_of(module: str) -> int | None:
    short = module.removeprefix("minillm.")
    return next((i for i, layer in enumerate(LAYERS) if short in layer), None)


def test_the_import_graph_has_no_cycle():
    assert find_cycle(graph()) is None, f"import cycle: {' -> '.join(find_cycle(graph()))}"


def test_imports_point_one_way():
    wrong = []
    for module, targets in graph().items():
        low = layer_of(module)
        for target in targets:
            high = layer_of(target)
            if low is not None and high is not None and high > low:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "a lower layer imports a higher one: " + ", ".join(wrong)


def test_core_modules_import_nothing_they_should_not():
    g = graph()
    assert g["minillm.config"] <= {"minillm.validate"} and g["minillm.loss"] == set()
    assert g["minillm.moe"] <= {"minillm.config", "minillm.validate"} and g["minillm.validate"] == set()
    tooling = ("minillm.exercises", "minillm.book", "minillm.notebooks")
    wrong = [f"{m} -> {t}" for m, ts in g.items() if not m.startswith(tooling)
             for t in ts if t.startswith(tooling)]
    assert not wrong, f"concept modules must not import exercises or book tooling: {wrong}"


if __name__ == "__main__":
    g = graph()
    width = max(map(len, g))
    for module, targets in g.items():
        short = sorted(t.removeprefix("minillm.") for t in targets)
        print(f"{module.removeprefix('minillm.'):<{width - 8}} -> {', '.join(short) or '-'}")
    cycle = find_cycle(g)
    print("cycle: " + " -> ".join(cycle) if cycle else "no cycles")
    sys.exit(1 if cycle else 0)


def test_every_checker_is_re_exported_explicitly():
    """Notebooks write `from minillm.exercises import check_x`: each topic module's
    checkers must be imported by name in minillm/exercises/__init__.py."""
    import minillm.exercises as exercises

    init = (PACKAGE / "exercises" / "__init__.py").read_text()
    missing = []
    for path in sorted((PACKAGE / "exercises").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("check_") \
                    and path.name != "__init__.py":
                if node.name not in init or not hasattr(exercises, node.name):
                    missing.append(f"{path.stem}.{node.name}")
    assert not missing, f"not re-exported in minillm/exercises/__init__.py: {missing}"
