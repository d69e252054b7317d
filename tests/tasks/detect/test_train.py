"""`edgevision train` on detection data: the run folder, resume, checkpoints, both formats."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from edgevision.data.synth_detect import generate_detection_dataset
from edgevision.errors import EdgeVisionError
from edgevision.spec import ModelSpec
from edgevision.train import TrainConfig, train
from edgevision.train import loop as loop_module
from edgevision.train.checkpoint import BEST, load_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def coco_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("det") / "data"
    return generate_detection_dataset(out, images=24, seed=3, size=(160, 120), progress=False)


def _config(data: Path, out: Path, **changes) -> TrainConfig:
    base = {
        "data": str(data),
        "out": str(out),
        "backbone": "test_efficientnet",
        "weights": None,
        "size": "96x64",
        "batch_size": 4,
        "epochs": 2,
        "threads": 1,
        "quiet": True,
        "augment": "light",
        "split": (0.5, 0.25, 0.25),
    }
    return TrainConfig(**{**base, **changes})


def test_detection_run_folder_has_the_report(coco_data, tmp_path):
    result = train(_config(coco_data, tmp_path / "run"))
    run = result.run_dir
    assert result.config["task"] == "detection"  # inferred from the COCO layout
    assert result.config["monitor"] == "val_map" and result.config["resize"] == "letterbox"
    for name in (
        "metrics.json",
        "report.txt",
        "curves.png",
        "pr_curve_val.png",
        "pr_curve_test.png",
        "predictions_test.png",
        "split.json",
        "spec.json",
        BEST,
    ):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("val", "test"):
        m = metrics[split]
        assert {"map", "map50", "map75", "map_small", "per_class", "pr50"} <= set(m)
        assert 0.0 <= m["map"] <= m["map50"] <= 1.0
        assert set(m["per_class"]) == set(result.labels)
    assert metrics["history"][0]["train_loss_cls"] > 0
    spec = ModelSpec.load(run / "spec.json")
    assert spec.task == "detection" and spec.input_size == (64, 96)
    assert spec.detection.outputs == ("boxes", "scores")
    assert json.loads((run / "split.json").read_text())["task"] == "detection"


def test_checkpoint_rebuilds_the_detector(coco_data, tmp_path):
    result = train(_config(coco_data, tmp_path / "run", epochs=1))
    ckpt = load_checkpoint(result.run_dir)
    assert ckpt.spec.task == "detection"
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        a = ckpt.model(x)
        b = result.model(x)
    assert all(torch.allclose(u, v, atol=1e-5) for u, v in zip(a, b, strict=True))
    # `edgevision build` takes the run: the detector and its detection split
    from edgevision.compile.source import load_source
    from edgevision.data.detection import DetectionSplit

    source = load_source(result.run_dir)
    assert source.spec.task == "detection" and isinstance(source.split, DetectionSplit)


def _interrupt_in_epoch(monkeypatch, epoch: int, config: TrainConfig) -> None:
    """Train ``config`` with a Ctrl-C in epoch ``epoch`` (the checkpoints before it stay)."""
    real_epoch, calls = loop_module._train_epoch, []

    def crash(run, loader):
        calls.append(1)
        if len(calls) == epoch:
            raise KeyboardInterrupt
        return real_epoch(run, loader)

    monkeypatch.setattr(loop_module, "_train_epoch", crash)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    monkeypatch.setattr(loop_module, "_train_epoch", real_epoch)


def test_resume_after_interrupt_matches_an_uninterrupted_run(coco_data, tmp_path, monkeypatch):
    whole = train(_config(coco_data, tmp_path / "whole", epochs=3, ema=0.9))
    _interrupt_in_epoch(monkeypatch, 3, _config(coco_data, tmp_path / "cut", epochs=3, ema=0.9))
    resumed = train(_config(coco_data, tmp_path / "cut", epochs=3, resume=True))
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["val_loss"] for h in whole.history] == [h["val_loss"] for h in resumed.history]
    assert [h["val_map"] for h in whole.history] == [h["val_map"] for h in resumed.history]


def test_yolo_folder_trains_like_the_coco_one(coco_data, tmp_path):
    """The same data as YOLO txt (images/ + labels/ + data.yaml) gives the same split."""
    doc = json.loads((coco_data / "annotations.json").read_text())
    root = tmp_path / "yolo"
    (root / "labels").mkdir(parents=True)
    shutil.copytree(coco_data / "images", root / "images")
    names = [c["name"] for c in sorted(doc["categories"], key=lambda c: c["id"])]
    ids = {c["id"]: i for i, c in enumerate(sorted(doc["categories"], key=lambda c: c["id"]))}
    (root / "data.yaml").write_text("names:\n" + "".join(f"  - {n}\n" for n in names))
    rows: dict[int, list[str]] = {im["id"]: [] for im in doc["images"]}
    for a in doc["annotations"]:
        im = next(i for i in doc["images"] if i["id"] == a["image_id"])
        x, y, w, h = a["bbox"]
        cx, cy = (x + w / 2) / im["width"], (y + h / 2) / im["height"]
        nw, nh = w / im["width"], h / im["height"]
        rows[a["image_id"]].append(f"{ids[a['category_id']]} {cx:.6f} {cy:.6f} {nw:.6f} {nh:.6f}")
    for im in doc["images"]:
        stem = Path(im["file_name"]).stem
        (root / "labels" / f"{stem}.txt").write_text("\n".join(rows[im["id"]]) + "\n")
    result = train(_config(root, tmp_path / "run", epochs=1))
    assert result.config["task"] == "detection" and result.labels == names
    coco_split = json.loads(
        (train(_config(coco_data, tmp_path / "coco", epochs=1)).run_dir / "split.json").read_text()
    )
    yolo_split = json.loads((result.run_dir / "split.json").read_text())
    n_boxes = [
        sum(len(s["boxes"]) for s in split["items"]["train"]) for split in (coco_split, yolo_split)
    ]
    assert n_boxes[0] == n_boxes[1]


def test_detection_options_are_checked(coco_data, tmp_path):
    with pytest.raises(EdgeVisionError, match="--monitor 'val_acc'"):
        train(_config(coco_data, tmp_path / "a", monitor="val_acc"))
    with pytest.raises(EdgeVisionError, match="--task"):
        train(_config(coco_data, tmp_path / "b", task="pose"))
    with pytest.raises(EdgeVisionError, match="--size"):
        train(_config(coco_data, tmp_path / "c", size="96by64"))


def test_compare_baseline_reports_map(coco_data, tmp_path):
    config = _config(coco_data, tmp_path / "run", epochs=1, freeze="last:1", compare_baseline=True)
    result = train(config)
    table = json.loads((result.run_dir / "comparison.json").read_text())
    assert set(table) == {"head only", "fine-tuned (last:1)"}
    assert all("test_map" in row and "test_map50" in row for row in table.values())


def _ddp_worker(rank: int, world: int, port: int, config: dict, out: str) -> None:
    from tests.helpers import set_torchrun_env

    set_torchrun_env(rank, world, port)
    torch.set_num_threads(1)
    result = train(TrainConfig(**config))
    state = {k: v.detach().cpu().clone() for k, v in result.model.state_dict().items()}
    timing = ("seconds", "images_per_s")  # each rank's own clock
    history = [{k: v for k, v in h.items() if k not in timing} for h in result.history]
    saved = {"state": state, "history": history, "test": result.metrics["test"]["map"]}
    torch.save(saved, Path(out) / f"rank{rank}.pt")


def test_two_cpu_ranks_agree_on_weights_and_map(coco_data, tmp_path):
    """DDP: each rank evaluates its shard; the gathered mAP (all val images) is the same."""
    import torch.multiprocessing as mp

    from tests.helpers import free_port

    port = free_port()
    config = _config(coco_data, tmp_path / "run", epochs=2, batch_size=2).to_dict()
    config["split"] = tuple(config["split"])
    mp.spawn(_ddp_worker, args=(2, port, config, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])
    assert r0["history"] == r1["history"] and r0["test"] == r1["test"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert metrics["test"]["images"] == len(split["items"]["test"])  # both shards counted


def test_cli_synth_then_train_a_detector(tmp_path, capsys):
    """`edgevision data synth --task detection` → `edgevision train` as a user runs them."""
    from edgevision.cli.app import main

    data, run = tmp_path / "scenes", tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        main(["data", "synth", str(data), "--task", "detection", "--images", "16"])
    assert info.value.code == 0
    args = ["train", str(data), "--out", str(run), "--backbone", "test_efficientnet"]
    args += ["--weights", "none", "--size", "96x64", "--epochs", "1", "--threads", "1", "-q"]
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "detection balance" in out and "val mAP" in out and "mAP@.5" in out
    assert json.loads((run / "config.json").read_text())["task"] == "detection"
    assert (run / "predictions_test.png").is_file()


def test_copy_paste_reaches_the_training_images_only(coco_data, tmp_path, monkeypatch):
    from edgevision.tasks.detect import data as det_data

    real, calls = det_data.paste_objects, []

    def counting(*args, **kwargs):
        calls.append(args[4])  # how many objects are asked for
        return real(*args, **kwargs)

    monkeypatch.setattr(det_data, "paste_objects", counting)
    result = train(_config(coco_data, tmp_path / "cp", epochs=1, copy_paste=2))
    assert result.config["copy_paste"] == 2
    assert len(calls) == 12 and set(calls) <= {1, 2}  # every training image (12 of 24), no other
    calls.clear()
    train(_config(coco_data, tmp_path / "off", epochs=1, copy_paste=0))
    assert calls == []


def test_a_run_saved_before_copy_paste_resumes_without_it(coco_data, tmp_path, monkeypatch):
    _interrupt_in_epoch(
        monkeypatch, 2, _config(coco_data, tmp_path / "old", epochs=2, copy_paste=0)
    )
    last = tmp_path / "old" / "checkpoint_last.pt"
    payload = torch.load(last, weights_only=True)
    del payload["config"]["copy_paste"]  # as written before the option existed
    torch.save(payload, last)
    resumed = train(_config(coco_data, tmp_path / "old", epochs=2, resume=True))
    assert resumed.config["copy_paste"] == 0  # not detection's default of 32
