"""Scanning, verifying and splitting datasets (torch-free)."""

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from rich.console import Console

from edgevision.data.dataset import (
    DEFAULT_RATIOS,
    ImageStore,
    balance_table,
    class_counts,
    detect_layout,
    make_split,
    scan_dataset,
)
from edgevision.data.split import Split
from edgevision.errors import DataError


def write_images(folder: Path, count: int, start: int = 0, shape=(24, 32)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    paths = []
    for i in range(start, start + count):
        path = folder / f"{i:03d}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
        paths.append(path)
    return paths


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "data"
    for name, n in (("cat", 20), ("dog", 10), ("eel", 6)):
        write_images(root / name, n)
    return root


def add_bad_files(root: Path) -> None:
    (root / "cat" / "empty.jpg").write_bytes(b"")
    (root / "cat" / "text.png").write_text("not an image")
    good = (root / "dog" / "000.png").read_bytes()
    (root / "dog" / "cut.png").write_bytes(good[: len(good) // 2])
    (root / "dog" / "notes.txt").write_text("x")
    (root / "eel" / ".DS_Store").write_bytes(b"\0")
    cv2.imwrite(str(root / "stray.png"), np.zeros((8, 8, 3), np.uint8))
    (root / "README.md").write_text("about this data")


def test_imagefolder_split_is_stratified_and_disjoint(folder):
    split = scan_dataset(folder)
    assert split.labels == ["cat", "dog", "eel"] and split.skipped == []
    counts = class_counts(split)
    assert counts["cat"] == {"train": 14, "val": 3, "test": 3}
    assert counts["dog"] == {"train": 8, "val": 1, "test": 1} or counts["dog"]["val"] == 2
    assert all(min(c.values()) >= 1 for c in counts.values())
    seen = [p for rows in split.items.values() for p, _ in rows]
    assert len(seen) == len(set(seen)) == 36
    assert all((folder / p).is_file() for p in seen)
    # labels follow the folder
    assert all(
        Path(p).parts[0] == split.labels[y] for rows in split.items.values() for p, y in rows
    )


def test_split_is_seeded(folder):
    a, b, c = (
        scan_dataset(folder, seed=0),
        scan_dataset(folder, seed=0),
        scan_dataset(folder, seed=1),
    )
    assert a.items == b.items
    assert a.items["val"] != c.items["val"]


def test_bad_files_are_skipped_and_listed(folder):
    add_bad_files(folder)
    split = scan_dataset(folder)
    reasons = {s["path"]: s["reason"] for s in split.skipped}
    assert set(reasons) == {
        "cat/empty.jpg",
        "cat/text.png",
        "dog/cut.png",
        "dog/notes.txt",
        "stray.png",
    }
    assert "empty" in reasons["cat/empty.jpg"]
    assert "truncated" in reasons["dog/cut.png"]
    assert "not a decodable" in reasons["cat/text.png"]
    assert "not an image" in reasons["dog/notes.txt"]
    assert "class folder" in reasons["stray.png"]
    assert sum(len(v) for v in split.items.values()) == 36


@pytest.mark.parametrize(
    ("classes", "needle"),
    [
        ({}, "no usable images"),
        ({"cat": 5}, "only one class"),
        ({"cat": 5, "dog": 2}, "'dog' has 2"),
    ],
)
def test_unusable_datasets_are_clear_errors(tmp_path, classes, needle):
    root = tmp_path / "d"
    root.mkdir()
    for name, n in classes.items():
        write_images(root / name, n)
    with pytest.raises(DataError, match=needle):
        scan_dataset(root)


def test_only_corrupt_images_is_an_error(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="no usable images"):
        scan_dataset(tmp_path)


def test_missing_and_non_csv(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        scan_dataset(tmp_path / "nope")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="not a .csv"):
        scan_dataset(tmp_path / "x.json")


@pytest.mark.parametrize("ratios", [(0.8, 0.2), (0.7, 0.2, 0.2), (1.0, 0.0, 0.0), (0.9, -0.1, 0.2)])
def test_bad_ratios(folder, ratios):
    with pytest.raises(DataError, match="split ratios"):
        scan_dataset(folder, ratios=ratios)


def test_manifest(tmp_path, folder):
    add_bad_files(folder)
    rows = ["path,label"]
    for name in ("cat", "dog", "eel"):
        rows += [f"data/{name}/{i:03d}.png,{name.upper()}" for i in range(6)]
    rows += ["data/cat/empty.jpg,CAT", "data/missing.png,DOG", ""]
    (tmp_path / "m.csv").write_text("\n".join(rows))
    assert detect_layout(tmp_path / "m.csv") == "manifest"
    split = scan_dataset(tmp_path / "m.csv")
    assert split.labels == ["CAT", "DOG", "EEL"] and split.root == tmp_path
    assert {s["path"] for s in split.skipped} == {"data/cat/empty.jpg", "data/missing.png"}
    assert sum(len(v) for v in split.items.values()) == 18
    assert all(p.is_file() for p, _ in split.paths("train"))


def test_manifest_bad_row_names_the_line(tmp_path):
    (tmp_path / "m.csv").write_text("a.png,x\nb.png\n")
    with pytest.raises(DataError, match="line 2"):
        scan_dataset(tmp_path / "m.csv")


def test_user_given_split_folders(tmp_path):
    root = tmp_path / "d"
    for part, n in (("train", 4), ("val", 2), ("test", 1)):
        for name in ("a", "b"):
            write_images(root / part / name, n)
    (root / "val" / "a" / "bad.jpg").write_bytes(b"")
    assert detect_layout(root) == "splits"
    split = scan_dataset(root, seed=123)
    assert split.labels == ["a", "b"]
    assert {k: len(v) for k, v in split.items.items()} == {"train": 8, "val": 4, "test": 2}
    assert all(p.startswith("val/") for p, _ in split.items["val"])
    assert split.skipped == [{"path": "val/a/bad.jpg", "reason": split.skipped[0]["reason"]}]


def test_split_folders_errors(tmp_path):
    root = tmp_path / "d"
    for part in ("train", "val"):
        for name in ("a", "b"):
            write_images(root / part / name, 2)
    with pytest.raises(DataError, match="no test folder"):
        scan_dataset(root)
    write_images(root / "test" / "zebra", 1)
    with pytest.raises(DataError, match="zebra"):
        scan_dataset(root)


def test_make_split_counts_and_roundtrip(tmp_path):
    samples = [(f"c{y}/{i}.png", y) for y in range(3) for i in range(40)]
    split = make_split(samples, ["x", "y", "z"], tmp_path, DEFAULT_RATIOS, seed=5)
    sizes = Counter({k: len(v) for k, v in split.items.items()})
    assert sizes == {"train": 84, "val": 18, "test": 18}
    split.save(tmp_path / "split.json")
    assert Split.load(tmp_path / "split.json").items == split.items


def test_store_decodes_once_and_respects_its_limit(folder):
    path = folder / "cat" / "000.png"
    store = ImageStore()
    first = store.get(path)
    assert store.get(path) is first and len(store) == 1
    assert not first.flags.writeable  # augmentations cannot corrupt the cache
    tiny = ImageStore(limit_bytes=10)
    assert tiny.get(path) is not tiny.get(path) and len(tiny) == 0


def test_scan_fills_the_store(folder):
    store = ImageStore()
    split = scan_dataset(folder, store=store)
    assert len(store) == sum(len(v) for v in split.items.values())


def test_balance_table(folder):
    console = Console(width=100, record=True)
    console.print(balance_table(scan_dataset(folder)))
    text = console.export_text()
    assert "cat" in text and "total" in text and "55.6%" in text
