"""End-to-end training runs on tiny data (timm's 0.1M-parameter test model, 32 px)."""

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from edgevision.errors import DataError, EdgeVisionError
from edgevision.spec import ModelSpec
from edgevision.tasks.classify.train import TRAINER
from edgevision.train import loop as loop_module
from edgevision.train import train
from edgevision.train.checkpoint import BEST, LAST, load_checkpoint, read_checkpoint
from edgevision.train.loop import _early_stopping, _Progress


def weights_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_run_folder_has_everything_build_needs(tiny_config, tiny_data):
    (tiny_data / "red" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    (tiny_data / "blue" / "empty.png").write_bytes(b"")
    result = train(tiny_config(epochs=2))
    run = result.run_dir
    files = [BEST, LAST, "spec.json", "split.json", "config.json", "metrics.json", "report.txt"]
    for name in [*files, "confusion_val.png", "confusion_test.png", "curves.png"]:
        assert (run / name).is_file(), name
    assert (run / "curves.png").read_bytes().startswith(b"\x89PNG")
    spec = ModelSpec.load(run / "spec.json")
    assert spec.labels == ("blue", "green", "red") and spec.input_size == (32, 32)
    assert spec.resize == "stretch" and spec.channel_order == "RGB"
    ck = load_checkpoint(run)
    assert ck.spec == spec and ck.backbone == "test_efficientnet" and ck.config["size"] == 32
    assert ck.model(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val", "test", "run", "history", "skipped"} <= set(metrics)
    assert set(metrics["test"]["report"]) >= {"blue", "green", "red", "macro avg"}
    assert 0.0 <= metrics["test"]["top1"] <= 1.0 and len(metrics["history"]) == 2
    assert {s["path"] for s in metrics["skipped"]} == {"red/broken.jpg", "blue/empty.png"}
    report = (run / "report.txt").read_text()
    assert "precision" in report and "red/broken.jpg" in report and "skipped files: 2" in report
    assert result.skipped == metrics["skipped"] and result.epochs_run == 2


def test_same_seed_same_weights(tiny_config, tmp_path):
    a = train(tiny_config(out=str(tmp_path / "a"), augment="default", dropout=0.3))
    b = train(tiny_config(out=str(tmp_path / "b"), augment="default", dropout=0.3))
    c = train(tiny_config(out=str(tmp_path / "c"), augment="default", dropout=0.3, seed=1))
    assert weights_equal(a.model.state_dict(), b.model.state_dict())
    assert a.history[-1]["train_loss"] == b.history[-1]["train_loss"]
    assert not weights_equal(a.model.state_dict(), c.model.state_dict())


def test_resume_after_interrupt_matches_an_uninterrupted_run(tiny_config, tmp_path, monkeypatch):
    whole = train(tiny_config(out=str(tmp_path / "whole"), epochs=3, dropout=0.3, ema=0.9))
    real_epoch, calls = loop_module._train_epoch, []

    def crash_in_epoch_3(run, loader):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_epoch(run, loader)

    monkeypatch.setattr(loop_module, "_train_epoch", crash_in_epoch_3)
    config = tiny_config(out=str(tmp_path / "cut"), epochs=3, dropout=0.3, ema=0.9)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    assert read_checkpoint(tmp_path / "cut" / LAST)["epoch"] == 2
    monkeypatch.setattr(loop_module, "_train_epoch", real_epoch)
    with pytest.raises(EdgeVisionError, match="already holds a training run"):
        train(config)
    resumed = train(tiny_config(out=str(tmp_path / "cut"), epochs=3, resume=True, dropout=0.0))
    assert resumed.config["dropout"] == 0.3  # training options come from the checkpoint
    assert resumed.config["ema"] == 0.9
    assert weights_equal(whole.model.state_dict(), resumed.model.state_dict())
    assert [h["val_loss"] for h in whole.history] == [h["val_loss"] for h in resumed.history]


def test_resume_without_a_run_and_bad_options(tiny_config):
    with pytest.raises(EdgeVisionError, match="does not exist"):
        train(tiny_config(resume=True))
    with pytest.raises(EdgeVisionError, match="--optimizer"):
        train(tiny_config(optimizer="adam"))
    with pytest.raises(EdgeVisionError, match="--epochs"):
        train(tiny_config(epochs=0))
    with pytest.raises(EdgeVisionError, match="freeze strategy"):
        train(tiny_config(freeze="half"))
    with pytest.raises(EdgeVisionError, match="head-only"):
        train(tiny_config(freeze="head", compare_baseline=True))


def test_bad_datasets_are_clear_errors(tiny_config, tmp_path):
    one = tmp_path / "one" / "only"
    one.mkdir(parents=True)
    for i in range(4):
        cv2.imwrite(str(one / f"{i}.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match="only one class"):
        train(tiny_config(data=str(tmp_path / "one")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no usable images"):
        train(tiny_config(data=str(tmp_path / "empty")))


def test_compare_baseline_and_frozen_backbone(tiny_config, tmp_path):
    result = train(tiny_config(epochs=1, freeze="last:1", compare_baseline=True, quiet=False))
    base = result.baseline
    assert base is not None and base.run_dir == result.run_dir / "baseline"
    assert base.config["freeze"] == "head"
    comparison = json.loads((result.run_dir / "comparison.json").read_text())
    assert set(comparison) == {"head only", "fine-tuned (last:1)"}
    # head-only left the backbone exactly as it started (same seed → same initial weights)
    start = train(tiny_config(out=str(tmp_path / "zero"), epochs=1, lr=1e-9, freeze="head"))
    a, b = base.model.state_dict(), start.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("classifier"))


def test_default_backbone_with_imagenet_weights(tiny_config):
    result = train(tiny_config(backbone="efficientnet_lite0", weights="default", size=48, epochs=1))
    assert result.model.get_classifier().out_features == 3
    assert result.metrics["run"]["weights"] == "default"


def early_stop_run(monitor: str, patience: int):
    model = torch.nn.Linear(1, 1)
    config = SimpleNamespace(monitor=monitor, patience=patience)
    return SimpleNamespace(
        config=config, trainer=TRAINER, progress=_Progress(), eval_model=model, best_state=None
    )


def test_early_stopping_rules():
    run = early_stop_run("val_acc", patience=2)
    seq = [(0.5, 1.0), (0.7, 0.9), (0.7, 0.8), (0.7, 0.85), (0.6, 0.7)]
    flags = [
        _early_stopping(run, {"epoch": i + 1, "val_acc": acc, "val_loss": loss, "val_f1": 0})
        for i, (acc, loss) in enumerate(seq)
    ]
    assert flags == [True, True, True, False, False]  # a tie on accuracy goes to the lower loss
    assert run.progress.best_epoch == 3 and run.progress.stopped_early
    run = early_stop_run("val_loss", patience=0)
    for i, loss in enumerate([1.0, 2.0, 3.0, 4.0]):
        _early_stopping(run, {"epoch": i + 1, "val_acc": 0, "val_loss": loss, "val_f1": 0})
    assert run.progress.best_epoch == 1 and not run.progress.stopped_early  # 0 = never stop


def test_manifest_dataset(tiny_config, tiny_data, tmp_path):
    rows = ["path,label"] + [
        f"{p.parent.name}/{p.name},{p.parent.name}" for p in sorted(Path(tiny_data).rglob("*.png"))
    ]
    (tiny_data / "labels.csv").write_text("\n".join(rows))
    result = train(tiny_config(data=str(tiny_data / "labels.csv"), epochs=1))
    assert result.labels == ["blue", "green", "red"]
    assert sum(result.metrics["run"]["images"].values()) == 18


def test_local_weights_file(tiny_config, tmp_path):
    from edgevision.train.backbones import create_model

    torch.manual_seed(7)
    source = create_model("test_efficientnet", num_classes=10, weights=None)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    result = train(tiny_config(weights=str(tmp_path / "w.pt"), freeze="head", epochs=1))
    assert torch.equal(result.model.conv_stem.weight, source.conv_stem.weight)  # frozen, loaded
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(EdgeVisionError, match="not a PyTorch file"):
        train(tiny_config(weights=str(tmp_path / "bad.pt"), out=str(tmp_path / "r2")))
    torch.save({"conv_stem.weight": source.conv_stem.weight, "x": _Foreign()}, tmp_path / "p.pt")
    with pytest.raises(EdgeVisionError, match="refused for safety") as info:
        train(tiny_config(weights=str(tmp_path / "p.pt"), out=str(tmp_path / "r3")))
    assert "\n" not in info.value.message and "to safetensors" in info.value.fix
    assert not (tmp_path / "r3" / "checkpoint_last.pt").exists()


class _Foreign:
    """A class outside torch's allowlist: its pickle is refused by weights_only loading."""


def test_ema_weights_are_the_ones_kept(tiny_config):
    result = train(tiny_config(epochs=1, ema=0.5, batch_size=2))  # 1 epoch (the best), 3 steps
    best = read_checkpoint(result.best_checkpoint)
    last = read_checkpoint(result.run_dir / LAST)
    kept = result.model.state_dict()
    assert weights_equal(best["state_dict"], kept) and weights_equal(last["ema"], kept)
    assert not weights_equal(last["state_dict"], kept)  # the raw weights differ from the average


def test_resume_a_run_saved_before_the_task_layer(tiny_config, tmp_path):
    """A checkpoint whose config has no task (and a v1 spec) resumes as a classifier."""
    first = train(tiny_config(out=str(tmp_path / "old"), epochs=1))
    last = first.run_dir / LAST
    payload = torch.load(last, weights_only=True)
    payload["config"].pop("task")
    payload["config"]["monitor"] = "val_acc"
    payload["spec"]["schema_version"] = 1
    torch.save(payload, last)
    resumed = train(tiny_config(out=str(tmp_path / "old"), epochs=2, resume=True))
    assert resumed.config["task"] == "classification" and resumed.epochs_run == 2
