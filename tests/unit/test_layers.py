"""The layers of design.md are enforced by reading imports.

Pure modules (model/, ops, layout, flags, errors) import nothing that touches
the OS; only ``_os/syscalls`` loads libc (imports ctypes).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "src" / "sealkit"
PURE = ["ops.py", "layout.py", "flags.py", "errors.py", "model"]
OS_MODULES = {
    "ctypes",
    "os",
    "io",
    "subprocess",
    "socket",
    "mmap",
    "pathlib",
    "shutil",
    "tempfile",
    "fcntl",
    "resource",
    "signal",
    "psutil",
    "elftools",
    "multiprocessing",
}
# Project modules that touch the OS; pure modules must not import them either.
PURE_FROM_OS = {"strerror"}  # a table lookup
OS_PROJECT = {"_os", "elf", "memory", "executor", "hardening", "audit", "cli"}


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ("." * node.level) + (node.module or "")
            if base == "os" and {a.name for a in node.names} <= PURE_FROM_OS:
                continue
            found.append((base, node.lineno))
            if node.module is None:
                found += [("." * node.level + a.name, node.lineno) for a in node.names]
    return found


def _pure_files() -> list[Path]:
    files = []
    for name in PURE:
        target = PKG / name
        files += sorted(target.rglob("*.py")) if target.is_dir() else [target]
    return [f for f in files if f.exists()]


@pytest.mark.parametrize("path", _pure_files(), ids=lambda p: str(p.relative_to(PKG)))
def test_pure_modules_touch_no_os(path: Path) -> None:
    for name, line in _imports(path):
        top = name.lstrip(".").split(".")[0]
        assert top not in OS_MODULES, f"{path.name}:{line} imports {name}: pure modules do no I/O"
        if name.startswith("."):
            assert top not in OS_PROJECT, (
                f"{path.name}:{line} imports {name}: pure layer imports down only"
            )
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert not node.value.startswith(("/proc", "/sys", "/dev")), f"{path.name} names a path"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in ("open", "exec", "eval", "__import__"), (
                f"{path.name}:{node.lineno} calls {node.func.id}()"
            )


def test_only_syscalls_loads_libc() -> None:
    offenders = []
    for path in PKG.rglob("*.py"):
        if path.relative_to(PKG).as_posix() == "_os/syscalls.py":
            continue
        text = path.read_text()
        if "CDLL(" in text or "cdll." in text or "use_errno" in text:
            offenders.append(str(path.relative_to(PKG)))
    assert offenders == [], f"only _os/syscalls may load libc: {offenders}"


def test_cli_uses_public_api_only() -> None:
    for path in (PKG / "cli").rglob("*.py"):
        for name, line in _imports(path):
            if (
                name.startswith("..")
                and name.lstrip(".").split(".")[0].startswith("_")
                and not name.endswith("__version__")
            ):
                pytest.fail(f"cli/{path.name}:{line} imports private {name}")
