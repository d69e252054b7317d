"""`edgevision train` on the command line: a thin layer over `train(TrainConfig)`."""

from dataclasses import fields

import pytest
import typer

from edgevision.cli.app import app, main
from edgevision.train.config import TrainConfig

FAST = ["--backbone", "test_efficientnet", "--weights", "none", "--size", "32", "--threads", "1"]


def run_cli(*args: str) -> int:
    with pytest.raises(SystemExit) as info:
        main(["train", *args])
    return info.value.code


def test_cli_trains_and_writes_a_run(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    code = run_cli(str(tiny_data), "--out", str(out), *FAST, "--epochs", "1", "--batch-size",
                   "4", "--split", "0.5,0.25,0.25", "--quiet", "--freeze", "last:2")  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "class balance" in text and "epoch 1/1" in text and "edgevision build" in text
    assert (out / "checkpoint_best.pt").is_file() and (out / "spec.json").is_file()
    code = run_cli(str(tiny_data), "--out", str(out), *FAST, "--quiet")
    assert code == 2 and "--resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--split", "0.7,x,0.1"], "--split"),
        (["--split", "0.5,0.5,0.5"], "split ratios"),
        (["--freeze", "most"], "freeze strategy"),
        (["--schedule", "linear"], "--schedule"),
    ],
)
def test_cli_bad_options_are_one_line_errors(tiny_data, tmp_path, capsys, args, needle):
    assert run_cli(str(tiny_data), "--out", str(tmp_path / "r"), *FAST, *args) == 2
    err = capsys.readouterr().err
    assert "error:" in err and needle in err and "Traceback" not in err


def test_cli_defaults_mirror_the_config():
    command = typer.main.get_command(app).commands["train"]
    options = {p.name: p.default for p in command.params if p.name not in ("ctx", "data")}
    config = TrainConfig(data="x")
    assert set(options) == {f.name for f in fields(TrainConfig)} - {"data"}
    for name, default in options.items():
        expected = getattr(config, name)
        if name == "split":
            expected = ",".join(f"{r:g}" for r in expected)
        assert default == expected, name
