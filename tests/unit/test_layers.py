"""The layers described in CONTRIBUTING.md are enforced by reading imports.

::

    cli/                                   on top: the public API only
    sealing/  host/  fidelity/  analysis/     the faces: never each other, never the CLI
    _os/                                   the OS boundary: the only code that loads libc
    errors flags ops layout text  model/   pure: no ctypes, no /proc, no I/O

Imports point down only. One edge between faces is allowed and named in
:data:`CROSS_FACE`: the analyzer replays its counterexamples on the kernel
through the fidelity face's Target interface. ``sealkit/__init__.py`` (the
public surface, re-exports) and ``__main__`` sit above everything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "src" / "sealkit"
PURE = ["ops.py", "layout.py", "flags.py", "errors.py", "text.py", "model"]
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
OS_PROJECT = {"_os", "sealing", "host", "fidelity", "analysis", "cli"}

# The layer of every module, by its dotted name below ``sealkit``: pure 0,
# the OS boundary 1, a face 2, the command line 3, the package itself 4.
PURE_MODULES = {"errors", "flags", "ops", "layout", "text"}
PURE_PACKAGES = {"model"}
FACES = {"sealing", "host", "fidelity", "analysis"}
LAYERS = {"pure": 0, "os": 1, "face": 2, "cli": 3, "top": 4}
CROSS_FACE = {
    ("analysis", "sealkit.fidelity.target"),
    ("analysis", "sealkit.fidelity.differential"),
}
"""Imports from one face into another that are allowed: (importing face, module)."""


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


def _module_name(path: Path) -> str:
    parts = ["sealkit", *path.relative_to(PKG).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _layer(module: str) -> tuple[str, str]:
    """``(layer, face)`` of a module of sealkit (``face`` is ``""`` outside the faces)."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return "top", ""
    first = parts[1]
    if first in PURE_MODULES or first in PURE_PACKAGES:
        return "pure", ""
    if first == "_os":
        return "os", ""
    if first in FACES:
        return "face", first
    if first == "cli":
        return "cli", ""
    raise AssertionError(
        f"{module} belongs to no layer: add it to one in tests/unit/test_layers.py"
    )


def _resolved(module: str, path: Path) -> list[tuple[str, str, int]]:
    """``(imported module, imported name, line)`` for each import of sealkit
    code in ``path``: relative imports resolved, ``from X import Y`` naming
    the submodule ``X.Y`` when there is one."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, "", node.lineno) for a in node.names if a.name.startswith("sealkit")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("sealkit"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append(
                    (sub, "", node.lineno) if sub in MODULES else (target, alias.name, node.lineno)
                )
    return found


def _violations() -> list[str]:
    out = []
    for module, path in MODULES.items():
        layer, face = _layer(module)
        shown = path.relative_to(PKG) if path.is_relative_to(PKG) else path
        for imported, name, line in _resolved(module, path):
            where = f"{shown}:{line} imports {imported}"
            if imported == "sealkit":
                # The package itself is the public surface: only the CLI (and
                # __main__) reach through it, and anyone may read the version.
                if name != "__version__" and layer not in ("cli", "top"):
                    out.append(f"{where}.{name}: only the CLI uses the public surface")
                continue
            their_layer, their_face = _layer(imported)
            if LAYERS[their_layer] > LAYERS[layer]:
                out.append(f"{where}: a {layer} module imports up, into the {their_layer} layer")
            elif (
                layer == their_layer == "face"
                and face != their_face
                and (face, imported) not in CROSS_FACE
            ):
                out.append(f"{where}: the {face} face imports the {their_face} face")
    return out


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


def test_only_os_loads_libc() -> None:
    offenders = []
    for path in PKG.rglob("*.py"):
        if path.relative_to(PKG).parts[0] == "_os":
            continue
        text = path.read_text()
        if "CDLL(" in text or "cdll." in text or "use_errno" in text:
            offenders.append(str(path.relative_to(PKG)))
    assert offenders == [], f"only _os may load libc: {offenders}"
    loaders = [
        str(p.relative_to(PKG))
        for p in (PKG / "_os").rglob("*.py")
        if "CDLL(" in p.read_text() or "use_errno" in p.read_text()
    ]
    assert loaders == ["_os/syscalls.py"], loaders  # the one module that loads it


def test_cli_uses_public_api_only() -> None:
    for path in (PKG / "cli").rglob("*.py"):
        for name, line in _imports(path):
            if not name.startswith(".."):
                continue
            parts = [p for p in name.lstrip(".").split(".") if p]
            if any(p.startswith("_") for p in parts) and not name.endswith("__version__"):
                pytest.fail(f"cli/{path.name}:{line} imports private {name}")


def test_every_module_has_a_layer() -> None:
    layers = {module: _layer(module) for module in MODULES}
    assert layers["sealkit._os.syscalls"] == ("os", "")
    assert layers["sealkit.fidelity.executor.client"] == ("face", "fidelity")
    assert layers["sealkit.model.space"] == ("pure", "")
    assert {face for _, face in layers.values()} == FACES | {""}


def test_imports_point_down_and_faces_keep_to_themselves() -> None:
    assert _violations() == []


def test_the_import_check_sees_a_violation(tmp_path: Path) -> None:
    """The checker itself: an upward import and a face-to-face import are caught."""
    module, path = "sealkit.host.fake", tmp_path / "fake.py"
    path.write_text(
        "from ..cli import main\nfrom ..sealing import pages\nfrom .._os import procfs\n"
        "from ..fidelity.target import Window\nfrom .. import harden\n"
    )
    imported = [(m, n) for m, n, _ in _resolved(module, path)]
    assert imported == [
        ("sealkit.cli.main", ""),
        ("sealkit.sealing.pages", ""),
        ("sealkit._os.procfs", ""),
        ("sealkit.fidelity.target", "Window"),
        ("sealkit", "harden"),
    ]
    MODULES[module] = path
    try:
        found = _violations()
    finally:
        del MODULES[module]
    assert len(found) == 4, found
    assert "a face module imports up, into the cli layer" in found[0]
    assert "the host face imports the sealing face" in found[1]
    assert "the host face imports the fidelity face" in found[2]
    assert "only the CLI uses the public surface" in found[3]
