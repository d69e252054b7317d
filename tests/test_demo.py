import json

import pytest

from edgevision.demo import DemoConfig, clip_agreement, run_demo
from edgevision.errors import EdgeVisionError


def test_clip_agreement(tmp_path):
    events = tmp_path / "e.jsonl"
    events.write_text(
        "\n".join(json.dumps({"frame": i, "label": lab}) for i, lab in enumerate("aabx")) + "\n"
    )
    truth = {"frames": [{"index": i, "label": lab} for i, lab in enumerate("abbb")]}
    assert clip_agreement(events, truth) == pytest.approx(0.5)
    with pytest.raises(EdgeVisionError, match="no events"):
        clip_agreement(events, {"frames": [{"index": 99, "label": "a"}]})


@pytest.mark.slow
def test_demo_end_to_end_then_reuse(tmp_path):
    from rich.console import Console

    from edgevision.cli.demo import stage_table, summary_table

    cfg = DemoConfig(
        out=tmp_path / "demo",
        task="classification",
        per_class=12,
        clip_seconds=3,
        epochs=1,
        train_size=48,
        calib_size=16,
        iterations=20,
        budget_ms=1000.0,
        threads=1,
        quiet=True,
    )
    console = Console(record=True, width=160)
    first = run_demo(cfg, console)
    assert [s.name for s in first.stages] == ["data", "train", "build", "profile", "run"]
    assert not any(s.reused for s in first.stages)
    for key in ("bundle",):
        assert (tmp_path / "demo" / key / "manifest.json").is_file()
    assert first.stage("run")["frames"] == 45  # 3 s at 15 fps, every frame of the file
    assert 0.0 <= first.stage("run")["agreement"] <= 1.0
    console.print(summary_table(first), stage_table(first))
    text = console.export_text()
    assert "test top-1 int8-cpu" in text and "annotated.mp4" in text

    again = run_demo(cfg, console)
    assert all(s.reused for s in again.stages)
    assert again.stage("build") == first.stage("build")

    cfg.smooth = 5  # only the last stage depends on it
    third = run_demo(cfg, console)
    assert [s.reused for s in third.stages] == [True, True, True, True, False]


@pytest.mark.slow
def test_detection_demo_end_to_end(tmp_path):
    from rich.console import Console

    from edgevision.cli.demo import stage_table, summary_table

    cfg = DemoConfig(
        out=tmp_path / "demo",
        scenes=40,
        det_size="96x64",
        clip_seconds=3,
        epochs=1,
        calib_size=16,
        iterations=10,
        budget_ms=1000.0,
        threads=1,
        quiet=True,
    )
    console = Console(record=True, width=160)
    result = run_demo(cfg, console)
    assert cfg.task == "detection" and [s.name for s in result.stages][-1] == "run"
    build, run = result.stage("build"), result.stage("run")
    assert build["accuracy"]["int8-cpu"]["metric"] == "mAP@[.5:.95]"
    assert run["frames"] == 45 and {"mota", "idf1", "signs"} <= set(run["tracking"])
    assert run["tracking"]["signs"] >= 1  # the clip's signs are in its ground truth
    console.print(summary_table(result), stage_table(result))
    text = console.export_text()
    assert "MOTA / IDF1" in text and "test mAP@[.5:.95] int8-cpu" in text
    assert (tmp_path / "demo" / "tracks.jsonl").is_file()


@pytest.mark.slow
def test_segmentation_demo_end_to_end(tmp_path):
    from rich.console import Console

    from edgevision.cli.demo import stage_table, summary_table

    cfg = DemoConfig(
        out=tmp_path / "demo",
        task="segmentation",
        scenes=24,
        seg_size="96x64",
        clip_seconds=2,
        clip_size=(96, 64),
        epochs=1,
        calib_size=16,
        iterations=10,
        budget_ms=1000.0,
        threads=1,
        quiet=True,
    )
    console = Console(record=True, width=160)
    result = run_demo(cfg, console)
    assert [s.name for s in result.stages] == ["data", "train", "build", "profile", "run"]
    build, run = result.stage("build"), result.stage("run")
    assert build["accuracy"]["int8-cpu"]["metric"] == "mIoU"
    assert 0.0 <= result.stage("train")["test_miou"] <= 1.0
    assert run["frames"] == 30 and len(list((tmp_path / "demo" / "clip_masks").glob("*.png"))) == 30
    assert 0.0 <= run["clip_miou"] <= 100.0 and set(run["clip_per_class_iou"]) >= {"road"}
    console.print(summary_table(result), stage_table(result))
    text = console.export_text()
    assert "clip mIoU against its per-frame masks" in text and "test mIoU int8-cpu" in text
    again = run_demo(cfg, console)  # reused, the demo's own mask folder is no obstacle
    assert all(s.reused for s in again.stages)
