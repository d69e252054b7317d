"""The TensorRT backend's modules, one job each: build, select, parity, and a runner that needs
none of them. Each imports alone, in a fresh interpreter, without tensorrt."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import edgevision.backends.tensorrt as package

PACKAGE = "edgevision.backends.tensorrt"
FOLDER = Path(package.__file__).parent
MODULES = sorted(p.stem for p in FOLDER.glob("*.py") if p.stem != "__init__")
ABOVE_THE_RUNNER = ("build", "select", "parity")
# Stand-ins for a machine without them: None in sys.modules makes an import fail.
ABSENT = ("tensorrt", "pycuda", "pycuda.driver", "cuda", "cuda.bindings", "modelopt")
HEAVY = ("tensorrt", "pycuda", "cuda", "torch", "onnx", "modelopt")


def _fresh(code: str) -> str:
    prelude = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in ABSENT)
    out = subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _imported(node: ast.AST) -> list[str]:
    """The edgevision.backends.tensorrt modules an import statement names (short names)."""
    names = []
    if isinstance(node, ast.ImportFrom) and node.module:
        names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    elif isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    return sorted({n.removeprefix(PACKAGE + ".") for n in names if n.startswith(PACKAGE + ".")})


def _module_level_imports(module: str) -> set[str]:
    tree = ast.parse((FOLDER / f"{module}.py").read_text(encoding="utf-8"))
    return {n for node in tree.body for n in _imported(node) if n in MODULES}


def test_the_split_modules_exist():
    assert {"build", "select", "parity", "runner"} <= set(MODULES)
    assert "engine" not in MODULES


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone_without_tensorrt(module):
    loaded = _fresh(
        f"import {PACKAGE}.{module}\n"
        f"print(sorted(m for m in {HEAVY!r} if sys.modules.get(m) is not None))"
    )
    assert loaded == "[]"


def test_importing_the_runner_loads_neither_builder_nor_chooser():
    loaded = _fresh(
        f"import json, {PACKAGE}.runner\n"
        f"print(json.dumps([m for m in sys.modules if m.startswith('{PACKAGE}.')]))"
    )
    names = {m.removeprefix(PACKAGE + ".") for m in json.loads(loaded)}
    assert "runner" in names and not names & set(ABOVE_THE_RUNNER)


def test_the_runner_module_does_not_import_build_select_or_parity():
    """Not at import time, and not in any function but `TrtRunner.from_bundle`, which asks
    `select_engine` when called (the runner itself takes an engine, or a callable)."""
    tree = ast.parse((FOLDER / "runner.py").read_text(encoding="utf-8"))
    assert not _module_level_imports("runner") & set(ABOVE_THE_RUNNER)
    where = {}
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef):
            for node in ast.walk(func):
                for name in _imported(node):
                    if name.split(".")[0] in ABOVE_THE_RUNNER:
                        where.setdefault(func.name, set()).add(name)
    assert where == {"from_bundle": {"select", "select.select_engine"}}


def test_module_level_imports_form_no_circle():
    graph = {m: _module_level_imports(m) for m in MODULES}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module not in done:
            for nxt in graph[module]:
                visit(nxt, (*path, module))
            done.add(module)

    for module in MODULES:
        visit(module, ())


def test_public_names_still_resolve():
    from edgevision.backends.tensorrt import build, parity, runner, select, staleness

    assert package.build_engine is build.build_engine
    assert package.select_engine is select.select_engine
    assert package.engine_parity is parity.engine_parity
    assert package.TrtRunner is runner.TrtRunner
    assert package.EngineRecord is staleness.EngineRecord
    assert package.StaleEngineError is staleness.StaleEngineError


def test_calibration_images_need_neither_torch_nor_onnx(tmp_path):
    """The build stage's manifest parser is reused; it must stay importable on the device."""
    from tests.backends.tensorrt.bundles import make_trt_bundle

    images = tmp_path / "calib"
    images.mkdir()
    (images / "0.png").write_bytes(b"not decoded here")
    calib = {"format": "edgevision-calibration", "root": str(images), "files": ["0.png", "x.png"]}
    root = make_trt_bundle(tmp_path, extra={"calibration.json": json.dumps(calib).encode()})
    found = _fresh(
        "sys.modules['torch'] = sys.modules['onnx'] = None\n"
        "from edgevision.bundle import Bundle\n"
        f"from {PACKAGE}.parity import calibration_images\n"
        f"print([p.name for p in calibration_images(Bundle.open({str(root)!r}))])"
    )
    assert found == "['0.png']"
