import cv2
import numpy as np
import pytest

from edgevision.cli.app import main
from edgevision.data import read_image, synth
from edgevision.data.render import (
    SIGN_CLASSES,
    parse_size,
    sign_quad,
    sign_template,
    visible_box,
)
from edgevision.data.synth import (
    CLASSES,
    contact_sheet,
    generate_dataset,
    read_meta,
    render_sample,
    resolve_classes,
)
from edgevision.errors import DataError

SMALL = (64, 48)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


def _red_fraction(img):
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    return float((((hue < 8) | (hue > 170)) & (sat > 90) & (val > 60)).mean())


def test_class_list():
    assert len(SIGN_CLASSES) >= 12 and CLASSES[-1] == "background"
    assert len(set(CLASSES)) == len(CLASSES) == len(SIGN_CLASSES) + 1
    for name in ("speed_limit_30", "speed_limit_120", "stop", "yield", "no_entry"):
        assert name in CLASSES


def test_tree_counts_and_decoding(tmp_path):
    out = generate_dataset(tmp_path / "ds", per_class=2, size=SMALL, progress=False)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(CLASSES)
    for name in CLASSES:
        files = sorted((out / name).iterdir())
        assert [f.name for f in files] == ["0000.jpg", "0001.jpg"]
        for f in files:
            assert read_image(f).shape == (48, 64, 3)
    assert read_meta(out)["classes"] == CLASSES
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left behind


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    kw = dict(
        per_class=2, size=SMALL, classes=["stop", "speed_limit_80", "background"], progress=False
    )
    a = _files(generate_dataset(tmp_path / "a", seed=3, **kw))
    b = _files(generate_dataset(tmp_path / "b", seed=3, **kw))
    c = _files(generate_dataset(tmp_path / "c", seed=4, **kw))
    assert a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)
    # An image does not depend on which other classes were generated alongside it.
    only = _files(
        generate_dataset(
            tmp_path / "d",
            seed=3,
            per_class=1,
            size=SMALL,
            classes=["speed_limit_80"],
            progress=False,
        )
    )
    assert only["speed_limit_80/0000.jpg"] == a["speed_limit_80/0000.jpg"]


def test_images_in_a_class_vary():
    imgs = [render_sample("no_entry", i, size=SMALL).astype(np.int16) for i in range(4)]
    assert all(np.abs(imgs[0] - im).mean() > 10 for im in imgs[1:])


def test_sign_images_show_the_sign():
    # A red octagon covering >= 30 % of the height must show up as red pixels.
    stop = np.mean([_red_fraction(render_sample("stop", i, size=(96, 72))) for i in range(12)])
    none = np.mean(
        [_red_fraction(render_sample("background", i, size=(96, 72))) for i in range(12)]
    )
    assert stop > 0.03 and stop > 2 * none


def test_works_without_sklearn_photos(tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "_photos", lambda: ())
    kw = dict(per_class=3, size=SMALL, classes=["yield"], progress=False)
    a = _files(generate_dataset(tmp_path / "a", **kw))
    assert a == _files(generate_dataset(tmp_path / "b", **kw))


def test_templates_have_their_shapes():
    coverage = {name: float(sign_template(name)[1].mean()) for name in SIGN_CLASSES}
    assert coverage["stop"] == pytest.approx(0.83, abs=0.03)  # octagon in its square
    assert coverage["no_entry"] == pytest.approx(np.pi / 4, abs=0.03)  # disc
    assert coverage["yield"] == pytest.approx(0.43, abs=0.04)  # triangle
    assert coverage["priority_road"] == pytest.approx(0.5, abs=0.03)  # diamond
    assert coverage["pedestrian_crossing"] > 0.95  # square
    digits = [sign_template(f"speed_limit_{v}")[0] for v in (30, 50, 60, 80)]
    assert all(np.abs(digits[0] - d).mean() > 1 for d in digits[1:])


def test_visible_box():
    inside = sign_quad((50, 40), 20)
    frac, box = visible_box(inside, 100, 80)
    assert frac == pytest.approx(1.0) and box == [40, 30, 20, 20]
    frac, box = visible_box(sign_quad((100, 40), 20), 100, 80)
    assert frac == pytest.approx(0.5, abs=0.01) and box[2] == 10
    assert visible_box(sign_quad((500, 40), 20), 100, 80) == (0.0, None)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(per_class=0), "per-class"),
        (dict(per_class=-3), "per-class"),
        (dict(per_class=1.5), "per-class"),
        (dict(classes=["stop", "speed_limit_70"]), "speed_limit_70"),
        (dict(classes=[]), "no classes"),
        (dict(size="160"), "WIDTHxHEIGHT"),
        (dict(size="8x8"), "out of range"),
        (dict(size="ax b"), "WIDTHxHEIGHT"),
    ],
)
def test_bad_input(tmp_path, kwargs, needle):
    with pytest.raises(DataError, match=needle) as info:
        generate_dataset(tmp_path / "ds", **{"progress": False, **kwargs})
    assert info.value.fix
    assert not (tmp_path / "ds").exists()


def test_refuses_to_replace_other_folders(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    with pytest.raises(DataError, match="not empty"):
        generate_dataset(tmp_path / "mine", per_class=1, size=SMALL, progress=False)
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "precious"
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        generate_dataset(tmp_path / "file", per_class=1, size=SMALL, progress=False)
    # A previous synthetic dataset is replaced whole.
    out = generate_dataset(
        tmp_path / "ds", per_class=2, size=SMALL, classes=["stop"], progress=False
    )
    generate_dataset(out, per_class=1, size=SMALL, classes=["yield"], progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["synth.json", "yield"]


def test_parse_size_and_classes():
    assert parse_size("160x120") == (160, 120) and parse_size((32, 24)) == (32, 24)
    assert resolve_classes(["stop,yield", "stop"]) == ["stop", "yield"]
    assert resolve_classes(None) == CLASSES


def test_contact_sheet(tmp_path):
    out = generate_dataset(
        tmp_path / "ds", per_class=3, size=SMALL, classes=["stop", "yield"], progress=False
    )
    png = contact_sheet(out, tmp_path / "sheet.png", per_class=3, cell_height=48)
    sheet = read_image(png)
    assert sheet.shape[0] == 2 * (48 + 2) + 2
    with pytest.raises(DataError):
        contact_sheet(tmp_path / "missing", tmp_path / "x.png")


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "ds"
    args = [
        "data",
        "synth",
        str(out),
        "--per-class",
        "1",
        "--size",
        "64x48",
        "--classes",
        "stop,background",
        "--preview",
        str(tmp_path / "p.png"),
    ]
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["background", "stop"]
    assert (tmp_path / "p.png").stat().st_size > 0
    with pytest.raises(SystemExit) as info:
        main(["data", "synth", str(out), "--classes", "stopp"])
    assert info.value.code == 2
    assert "stopp" in capsys.readouterr().err
