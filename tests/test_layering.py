"""Library code never imports the CLI: the CLI is a thin layer over the public API."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "edgevision"


def test_no_module_outside_cli_imports_from_cli():
    offenders = [
        p.relative_to(ROOT).as_posix()
        for p in ROOT.rglob("*.py")
        if p.relative_to(ROOT).parts[0] not in ("cli", "__main__.py")  # `python -m edgevision`
        and ("from edgevision.cli" in (text := p.read_text()) or "import edgevision.cli" in text)
    ]
    assert offenders == []
