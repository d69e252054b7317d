"""The README's examples run (or are checked against the CLI), so they never go stale."""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from edgevision.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
RUNNABLE_SECTION = "## The Python API"


def _blocks(lang: str, text: str = README) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def _shell_lines() -> list[str]:
    lines, pending = [], ""
    for block in _blocks("bash"):
        for raw in block.splitlines():
            line = pending + raw.split(" #")[0].rstrip()
            pending = line[:-1] + " " if line.endswith("\\") else ""
            if not pending and line.strip():
                lines.append(line.strip())
    return lines


EDGEVISION_LINES = [x for x in _shell_lines() if x.startswith("edgevision ")]
TOOL_LINES = [x for x in _shell_lines() if re.search(r"tools/\w+\.py", x)]


def _command(words: list[str]) -> tuple[Any, list[str]]:
    cmd = typer.main.get_command(app)  # typer vendors its own click: duck-type groups
    while hasattr(cmd, "commands") and words and words[0] in cmd.commands:
        cmd, words = cmd.commands[words[0]], words[1:]
    return cmd, words


def test_readme_has_examples():
    assert len(EDGEVISION_LINES) >= 20 and TOOL_LINES and _blocks("python")


@pytest.mark.parametrize("line", EDGEVISION_LINES)
def test_cli_examples_name_real_commands_and_options(line):
    cmd, rest = _command(shlex.split(line)[1:])
    assert not hasattr(cmd, "commands"), f"{line!r}: no such command"
    known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    used = {w.split("=")[0] for w in rest if w.startswith("-")}
    assert used <= known, f"{line!r}: unknown options {sorted(used - known)}"


@pytest.mark.parametrize("line", TOOL_LINES)
def test_tool_examples_name_real_options(line):
    script = re.search(r"tools/\w+\.py", line).group(0)
    out = subprocess.run(
        [sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, check=True
    ).stdout
    for opt in re.findall(r"\s(--[\w-]+)", line):
        assert opt in out, f"{line!r}: {script} has no {opt}"


def test_every_python_example_imports_real_names():
    for block in _blocks("python"):
        tree = ast.parse(block)
        imports = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        # TensorRT's modules import tensorrt lazily, so even they import here.
        exec(compile(ast.Module(imports, type_ignores=[]), "<README>", "exec"), {})


@pytest.mark.slow
def test_python_api_example_runs(tmp_path, monkeypatch):
    section = README.split(RUNNABLE_SECTION, 1)[1].split("\n## ", 1)[0]
    (block,) = _blocks("python", section)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "<README: The Python API>", "exec"), {"__name__": "__readme__"})
    assert (tmp_path / "example/bundle/manifest.json").is_file()
    assert (tmp_path / "example/events.jsonl").read_text().count("\n") == 30  # 2 s at 15 fps
