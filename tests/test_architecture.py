"""The dependency rules of the README, checked on the source: packages import only downward, no module
imports itself back through others, and product code never reads tests/."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("contract", "checkpoint", "patches", "convert", "runtime", "reference", "generate", "validate", "bench",
           "demo")
# what each package may import (besides itself, the standard library and third-party packages)
ALLOWED = {
    "contract": set(),
    "runtime": set(),                                   # model-agnostic: knows nothing of VoxCPM
    "checkpoint": {"contract"},
    "patches": {"contract", "checkpoint"},              # the patches know nothing of Core ML
    "convert": {"contract", "checkpoint", "patches", "runtime"},
    "generate": {"contract", "runtime"},                # torch-free: the runtime, the contract, the artifacts
    "reference": {"contract", "checkpoint", "patches", "generate"},
    "validate": {"contract", "checkpoint", "patches", "convert", "runtime", "generate", "reference"},
    "bench": {"contract", "checkpoint", "patches", "convert", "runtime", "generate", "reference"},
    "demo": set(),                                      # runs the other commands as processes
}
# plug-in registration: the registry loads the kernel modules, which register themselves with it
ALLOWED_CYCLES = {frozenset({"runtime.mil.registry", "runtime.mil.kernels"})}


def _modules():
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            yield name, path


def _imports(name: str, path: Path) -> set[str]:
    """Every product module `path` imports, at module level or inside functions."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return {m for m in found if m and m.split(".")[0] in PRODUCT}


def _graph():
    modules = dict(_modules())
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(name, path):
            while imported and imported not in modules:   # `from pkg import name`: name may be a symbol
                imported = imported.rpartition(".")[0]
            # a module always imports its parent packages first; that is not a dependency to judge
            if imported and imported != name and not name.startswith(imported + "."):
                targets.add(imported)
        graph[name] = targets
    return graph


def test_packages_import_only_what_they_may():
    wrong = sorted(f"{src} -> {dst}" for src, targets in _graph().items() for dst in targets
                   if dst.split(".")[0] != src.split(".")[0] and dst.split(".")[0] not in ALLOWED[src.split(".")[0]])
    assert wrong == []


def test_no_import_cycles():
    graph = _graph()
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                if not any(pair <= set(cycle) for pair in ALLOWED_CYCLES):
                    cycles.append(" -> ".join(cycle))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def _path_strings(path: Path):
    """String constants that are not docstrings (docstrings may cite a test as evidence)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def test_product_code_never_reads_tests():
    offenders = [str(path.relative_to(ROOT)) for _, path in _modules()
                 if any(text == "tests" or text.startswith("tests/") or "/tests/" in text
                        for text in _path_strings(path))]
    assert offenders == []
