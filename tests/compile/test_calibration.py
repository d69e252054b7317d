import json

import numpy as np
import pytest

from edgevision.compile.calibration import (
    MIN_IMAGES,
    Candidate,
    collect_calibration,
    read_manifest,
    stratified_order,
    write_manifest,
)
from edgevision.data.split import Split
from edgevision.errors import CalibrationError
from tests.compile.conftest import LABELS, make_image_tree, make_split, write_images


def test_folder_source_is_stratified_and_preprocessed(data_dir, spec):
    calib = collect_calibration(data_dir, spec, size=18)
    assert len(calib) == 18 and calib.tensors.shape == (18, 3, 32, 32)
    assert calib.tensors.dtype == np.float32
    assert calib.stats["classes"] == {"a": 6, "b": 6, "c": 6}
    assert all(len(i.sha256) == 64 and not i.path.startswith("/") for i in calib.images)
    assert calib.warnings == [] and calib.skipped == []
    manifest = calib.manifest()
    assert manifest["manifest_sha256"] == calib.manifest_sha256
    assert len(manifest["files"]) == 18


def test_manifest_roundtrip_and_hash_check(data_dir, spec, tmp_path):
    images = sorted(data_dir.rglob("*.png"))[:20]
    out = write_manifest(images, data_dir, tmp_path / "calib.json")
    root, cands = read_manifest(out)
    assert root.resolve() == data_dir.resolve() and len(cands) == 20
    calib = collect_calibration(out, spec, size=512)
    assert len(calib) == 20
    # The bundle's calibration.json is itself a manifest that reproduces the same set.
    (tmp_path / "again.json").write_text(json.dumps(calib.manifest()))
    assert collect_calibration(tmp_path / "again.json", spec).manifest_sha256 == (
        calib.manifest_sha256
    )
    doc = json.loads(out.read_text())
    doc["files"][3]["sha256"] = "0" * 64
    out.write_text(json.dumps(doc))
    with pytest.raises(CalibrationError, match="does not match its SHA-256"):
        collect_calibration(out, spec)


def test_glob_source(data_dir, spec):
    calib = collect_calibration(f"{data_dir}/**/*.png", spec, size=16)
    assert len(calib) == 16 and calib.source.startswith("glob")
    assert {i.label for i in calib.images} == set(LABELS)


def test_training_split_source(data_dir, spec):
    calib = collect_calibration(None, spec, size=16, split=make_split(data_dir))
    assert len(calib) == 16 and "training split" in calib.source
    with pytest.raises(CalibrationError, match="no training split"):
        collect_calibration(None, spec)


def test_empty_missing_and_too_small(tmp_path, spec):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="has no images"):
        collect_calibration(tmp_path / "empty", spec)
    with pytest.raises(CalibrationError, match="does not exist"):
        collect_calibration(tmp_path / "nope", spec)
    write_images(tmp_path / "few", MIN_IMAGES - 1, seed=0)
    with pytest.raises(CalibrationError, match=r"15 usable image\(s\).*at least 16"):
        collect_calibration(tmp_path / "few", spec)
    with pytest.raises(CalibrationError, match="too small"):
        collect_calibration(tmp_path / "few", spec, size=8)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CalibrationError, match="not readable JSON"):
        collect_calibration(tmp_path / "bad.json", spec)


def test_corrupt_images_are_skipped_counted_and_warned(tmp_path, spec, caplog):
    folder = tmp_path / "mixed"
    good = write_images(folder, 17, seed=1)
    (folder / "zero.png").write_bytes(b"")
    (folder / "junk.jpg").write_bytes(b"this is not an image")
    (folder / "cut.png").write_bytes(good[0].read_bytes()[:60])
    calib = collect_calibration(folder, spec, size=512)
    assert len(calib) == 17 and len(calib.skipped) == 3
    assert {s["path"].rsplit("/", 1)[-1] for s in calib.skipped} == {
        "zero.png",
        "junk.jpg",
        "cut.png",
    }
    assert any("skipped 3 unreadable" in w for w in calib.warnings)
    assert "skipped 3 unreadable" in caplog.text
    # Corrupt files below the minimum still fail, and say how many were skipped.
    for p in good[:5]:
        p.unlink()
    with pytest.raises(CalibrationError, match=r"12 usable image\(s\) \(3 unreadable skipped\)"):
        collect_calibration(folder, spec)


def test_missing_classes_and_pixel_statistics_warn(tmp_path, spec):
    data = make_image_tree(tmp_path / "data")
    split = make_split(data)
    # Only classes a and b, and far brighter than the training images.
    for label in ("a", "b"):
        write_images(tmp_path / "calib" / label, 10, seed=7, base=200)
    calib = collect_calibration(tmp_path / "calib", spec, split=split)
    text = " ".join(calib.warnings)
    assert "no image of class(es) c" in text
    assert "differ strongly from the training data" in text
    assert "training" in calib.stats
    # A set like the training data raises neither warning.
    assert collect_calibration(data, spec, split=split).warnings == []


def test_stratified_order_interleaves_classes():
    cands = [Candidate(f"{c}{i}", c) for c in "ab" for i in range(3)] + [Candidate("c0", "c")]
    labels = [c.label for c in stratified_order(cands, seed=3)]
    assert labels[:3] == ["a", "b", "c"] and labels[3:] == ["a", "b", "a", "b"]
    assert stratified_order(cands, 3) == stratified_order(cands, 3)


def test_split_with_labels_only_in_split(data_dir, spec):
    # Split roots may be relative to nothing: paths are resolved from the split's root.
    split = Split(data_dir, list(LABELS), {"train": [("a/000.png", 0)] * 20})
    calib = collect_calibration(None, spec, size=16, split=split)
    assert len(calib) == 16 and {i.label for i in calib.images} == {"a"}
    assert any("no image of class(es) b, c" in w for w in calib.warnings)
