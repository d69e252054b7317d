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
