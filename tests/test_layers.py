"""The package's layers (README, "How it fits together"): each layer imports only itself and
the layers below it, the independent verifier only the pure core and the chain, and the core
opens no database, socket or process."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "chainaudit"
LAYERS = ("core", "log", "chain", "verify", "risk", "service", "app", "api")
"""Bottom to top; the command line (cli.py, backup_cli.py, witness_cli.py) sits on all of them."""
TOP = len(LAYERS)
NO_IO = frozenset(
    {
        "sqlite3",
        "psycopg",
        "psycopg_pool",
        "socket",
        "subprocess",
        "httpx",
        "urllib",
        "uvicorn",
        "threading",
        "multiprocessing",
    }
)


def _module(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(
        ".__init__"
    )


def _level(module: str) -> int:
    """A module's layer, bottom 0; the package root (its version) and the C extensions of the
    log (``_native``, ``_seal``) belong to no layer above the log."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("__init__", "__version__"):  # the package root
        return -1
    if parts[1] in ("_native", "_seal"):
        return LAYERS.index("log")
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else TOP


def _imports(path: Path) -> list[str]:
    """Every module ``path`` imports (at run time or for typing), by its full name."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "chainaudit":
                found += [f"chainaudit.{alias.name}" for alias in node.names]
            else:
                found.append(node.module)
    return found


def _files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_layers_are_folders_of_the_package() -> None:
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} >= set(
        LAYERS
    )
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "backup_cli.py", "cli.py", "witness_cli.py"]


def test_each_layer_imports_only_itself_and_the_layers_below() -> None:
    upward = [
        f"{_module(path)} imports {name}"
        for path in _files()
        for name in _imports(path)
        if name.startswith("chainaudit") and _level(name) > _level(_module(path))
    ]
    assert upward == []


def test_the_verifier_imports_only_the_core_and_the_chain() -> None:
    allowed = {"core", "chain", "verify"}
    outside = [
        f"{_module(path)} imports {name}"
        for path in (PACKAGE / "verify").rglob("*.py")
        for name in _imports(path)
        if name.startswith("chainaudit.") and name.split(".")[1] not in allowed
    ]
    assert outside == []


def test_the_core_opens_no_database_socket_or_process() -> None:
    found = [
        f"{_module(path)} imports {name}"
        for path in (PACKAGE / "core").rglob("*.py")
        for name in _imports(path)
        if name.split(".")[0] in NO_IO
    ]
    assert found == []


def test_every_module_declares_its_public_names() -> None:
    """The public Python API is what the modules' ``__all__`` lists (the rest is internal)."""
    undeclared = []
    for path in _files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defines = any(
            isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign))
            for node in tree.body
        )
        declares = any(
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            for node in tree.body
        )
        if defines and not declares and path.name != "__main__.py":
            undeclared.append(_module(path))
    assert undeclared == []
