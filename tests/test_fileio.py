import pytest

from edgevision.fileio import atomic_dir, atomic_write_json, sha256_file


def test_atomic_write_and_hash(tmp_path):
    p = atomic_write_json(tmp_path / "x" / "a.json", {"k": 1})
    assert p.read_text().strip().startswith("{")
    assert len(sha256_file(p)) == 64
    assert [f.name for f in p.parent.iterdir()] == ["a.json"]


def test_atomic_dir_keeps_old_on_failure(tmp_path):
    target = tmp_path / "bundle"
    with atomic_dir(target) as d:
        (d / "f").write_text("v1")
    with pytest.raises(RuntimeError), atomic_dir(target) as d:
        (d / "f").write_text("v2")
        raise RuntimeError("crash mid-write")
    assert (target / "f").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_atomic_dir_never_renames_a_file_away(tmp_path):
    from edgevision.errors import OutputError

    target = tmp_path / "f.onnx"
    target.write_bytes(b"user file")
    with pytest.raises(OutputError, match="is not a folder"), atomic_dir(target):
        pass
    assert target.read_bytes() == b"user file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.onnx"]


def test_check_output_file(tmp_path):
    from edgevision.errors import OutputError
    from edgevision.fileio import check_output_file

    assert check_output_file(tmp_path / "new" / "r.json") == tmp_path / "new" / "r.json"
    assert (tmp_path / "new").is_dir() and not any((tmp_path / "new").iterdir())  # probe removed
    with pytest.raises(OutputError, match="is a folder"):
        check_output_file(tmp_path, "--json")
    with pytest.raises(OutputError, match="cannot be written"):
        check_output_file("/proc/x/y.json", "--json")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot be written"):
        check_output_file(tmp_path / "file" / "under.json", "--json")


def test_scratch_dir_is_removed_on_sigterm(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    code = (
        "import time\n"
        "from edgevision.fileio import scratch_dir\n"
        "with scratch_dir('ev-test-') as d:\n"
        "    (d / 'big').write_bytes(b'x' * 1000)\n"
        "    print(d, flush=True)\n"
        "    time.sleep(60)\n"
    )
    env = os.environ | {"TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
    )
    folder = proc.stdout.readline().strip()
    assert folder.startswith(str(tmp_path)) and os.path.isdir(folder)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    assert proc.returncode != 0 and not os.path.exists(folder)
    assert list(tmp_path.iterdir()) == []


def test_stale_scratch_folders_are_removed(tmp_path, monkeypatch):
    import os
    import tempfile
    import time

    from edgevision.fileio import remove_stale_scratch, scratch_dir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    old, fresh, other = tmp_path / "ev-build-old", tmp_path / "ev-build-new", tmp_path / "keep"
    for d in (old, fresh, other):
        d.mkdir()
    two_days = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days, two_days))
    os.utime(other, (two_days, two_days))
    with scratch_dir("ev-build-") as work:
        assert work.parent == tmp_path
        assert tempfile.gettempdir() == str(work)  # libraries' temp files land inside
    assert not old.exists() and fresh.exists() and other.exists()
    assert remove_stale_scratch("ev-build-") == []
