import pytest

from edgevision.cli.app import COMMAND_MODULES, app, main


def test_root_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "edgevision" in capsys.readouterr().out


@pytest.mark.parametrize("command", [c for c in COMMAND_MODULES])
def test_each_command_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "Usage" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert "edgevision 0.1.0" in capsys.readouterr().out


def test_app_is_typer():
    assert app.info.name == "edgevision"
