import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevision.backends.ort import OrtRunner
from edgevision.bundle import MANIFEST, Bundle, hash_files, write_bundle
from edgevision.errors import BackendError, BundleError, EdgeVisionError
from edgevision.fileio import sha256_file
from edgevision.spec import ModelSpec
from tests.helpers import tiny_bundle, tiny_classifier_onnx

SPEC = ModelSpec(labels=("a", "b", "c"), input_size=(32, 48))


def test_open_and_run(tmp_path):
    bundle = Bundle.open(tiny_bundle(tmp_path))
    art = bundle.artifact("fp32")
    assert art.precision == "fp32" and len(art.sha256) == 64
    with OrtRunner.from_bundle(bundle, threads=1) as runner:
        assert runner.name == "ort:fp32"
        out = runner.infer(np.zeros(bundle.spec.input_shape(2), np.float32))
        assert out["logits"].shape == (2, 3)
        assert runner.last_inference_time() > 0
        with pytest.raises(BackendError, match="shape"):
            runner.infer(np.zeros((1, 3, 10, 10), np.float32))
        with pytest.raises(BackendError, match="float32"):
            runner.infer(np.zeros(bundle.spec.input_shape(1), np.float64))
    with pytest.raises(BackendError, match="not active"):
        runner.infer(np.zeros(bundle.spec.input_shape(1), np.float32))


def test_tampered_missing_and_unknown(tmp_path):
    root = tiny_bundle(tmp_path)
    with pytest.raises(BundleError, match="no artifact 'int8-cpu'"):
        Bundle.open(root).artifact("int8-cpu")
    model = root / "model.fp32.onnx"
    model.write_bytes(model.read_bytes() + b"x")
    with pytest.raises(BundleError, match=r"model\.fp32\.onnx does not match"):
        Bundle.open(root)
    model.unlink()
    with pytest.raises(BundleError, match=r"missing model\.fp32\.onnx"):
        Bundle.open(root)
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps(manifest | {"schema_version": 7}))
    with pytest.raises(BundleError, match="schema_version 7"):
        Bundle.open(root)
    with pytest.raises(BundleError, match="does not exist"):
        Bundle.open(tmp_path / "nothing")


# -- the closed box: a bundle is its folder, all of it listed and hashed ------------------------
def small_bundle(tmp_path: Path) -> Path:
    """fp32 model, calibration.json, a report and a file in a sub-folder, at tmp_path/bundle;
    a different (valid) model outside it at tmp_path/elsewhere/evil.onnx."""
    model = tiny_classifier_onnx(tmp_path / "tiny.onnx")
    (tmp_path / "elsewhere").mkdir()
    tiny_classifier_onnx(tmp_path / "elsewhere" / "evil.onnx", seed=1)
    return write_bundle(
        tmp_path / "bundle",
        {
            "model.fp32.onnx": model,
            "calibration.json": b'{"files": []}\n',
            "report.json": b'{"top1": 1}\n',
            "docs/notes.txt": b"notes\n",
        },
        SPEC,
        {"fp32": {"file": "model.fp32.onnx", "precision": "fp32", "target": "any"}},
        calibration={"file": "calibration.json", "method": "minmax"},
        report={"json": "report.json", "plot": None},
    )


def read_manifest(root: Path) -> dict:
    return json.loads((root / MANIFEST).read_text())


def write_manifest(root: Path, manifest: dict) -> None:
    (root / MANIFEST).write_text(json.dumps(manifest))


def point_fp32_at(root: Path, file: str, digest: str, listed: bool = True) -> None:
    """Make the fp32 artifact name ``file`` (hash ``digest``), listed in 'files' or not."""
    m = read_manifest(root)
    m["artifacts"]["fp32"] |= {"file": file, "sha256": digest}
    if listed:
        m["files"][file] = digest
    write_manifest(root, m)


def evil(root: Path) -> Path:
    return root.parent / "elsewhere" / "evil.onnx"


@pytest.mark.parametrize(
    "name, why",
    [
        ("../elsewhere/evil.onnx", r"'\.' or '\.\.' component"),
        ("docs/../../elsewhere/evil.onnx", r"'\.' or '\.\.' component"),
        ("ABSOLUTE", "absolute path"),
        ("./model.fp32.onnx", r"'\.' or '\.\.' component"),
        ("docs//notes.txt", "empty component"),
        ("..\\elsewhere\\evil.onnx", "backslash"),
        ("C:/elsewhere/evil.onnx", "drive letter"),
        ("model.fp32.onnx\x00", "control character"),
        ("", "empty"),
    ],
)
def test_an_artifact_path_outside_the_bundle_is_refused(tmp_path, name, why):
    root = small_bundle(tmp_path)
    name = str(evil(root)) if name == "ABSOLUTE" else name
    point_fp32_at(root, name, sha256_file(evil(root)))
    with pytest.raises(BundleError, match=f"not a plain relative path inside the bundle .{why}"):
        Bundle.open(root)


def test_a_files_entry_outside_the_bundle_is_refused(tmp_path):
    root = small_bundle(tmp_path)
    m = read_manifest(root)
    m["files"]["../elsewhere/evil.onnx"] = sha256_file(evil(root))
    write_manifest(root, m)
    with pytest.raises(
        BundleError, match=r"files entry '\.\./elsewhere/evil\.onnx' is not a plain"
    ):
        Bundle.open(root)


def test_an_artifact_not_listed_in_files_is_refused(tmp_path):
    root = small_bundle(tmp_path)
    shutil.copyfile(evil(root), root / "evil.onnx")
    point_fp32_at(root, "evil.onnx", sha256_file(evil(root)), listed=False)
    with pytest.raises(BundleError, match="names 'evil.onnx', which manifest.json does not list"):
        Bundle.open(root)


def test_an_artifact_hash_unlike_the_files_hash_is_refused(tmp_path):
    root = small_bundle(tmp_path)
    m = read_manifest(root)
    m["artifacts"]["fp32"]["sha256"] = "0" * 64
    write_manifest(root, m)
    with pytest.raises(BundleError, match="artifact 'fp32' records SHA-256 0000"):
        Bundle.open(root)


def test_an_artifact_pointing_at_another_listed_file_with_its_hash_is_verified(tmp_path):
    """Consistent, so allowed: the file it names is checked like every other."""
    root = small_bundle(tmp_path)
    m = read_manifest(root)
    point_fp32_at(root, "report.json", m["files"]["report.json"])
    assert Bundle.open(root).artifact("fp32").file == "report.json"


def _link_model(root: Path) -> str:
    target = evil(root)
    (root / "model.fp32.onnx").unlink()
    (root / "model.fp32.onnx").symlink_to(target)
    point_fp32_at(root, "model.fp32.onnx", sha256_file(target))  # hashes as the old code saw
    return "model.fp32.onnx"


def _link_report(root: Path) -> str:
    outside = root.parent / "elsewhere" / "report.json"
    outside.write_bytes((root / "report.json").read_bytes())
    (root / "report.json").unlink()
    (root / "report.json").symlink_to(outside)
    return "report.json"


def _link_manifest(root: Path) -> str:
    outside = root.parent / "elsewhere" / MANIFEST
    outside.write_bytes((root / MANIFEST).read_bytes())
    (root / MANIFEST).unlink()
    (root / MANIFEST).symlink_to(outside)
    return MANIFEST


def _link_folder(root: Path) -> str:
    outside = root.parent / "elsewhere" / "docs"
    shutil.move(root / "docs", outside)
    (root / "docs").symlink_to(outside, target_is_directory=True)
    return "docs"


def _link_unlisted(root: Path) -> str:
    (root / "latest.onnx").symlink_to("model.fp32.onnx")  # even one pointing inside
    return "latest.onnx"


def _link_dangling(root: Path) -> str:
    (root / "docs" / "gone").symlink_to(root.parent / "nowhere")
    return "docs/gone"


@pytest.mark.parametrize(
    "make_link",
    [_link_model, _link_report, _link_manifest, _link_folder, _link_unlisted, _link_dangling],
)
def test_a_symbolic_link_in_the_bundle_is_refused(tmp_path, make_link):
    root = small_bundle(tmp_path)
    name = make_link(root)
    with pytest.raises(BundleError, match=f": {name} is a symbolic link"):
        Bundle.open(root)


def test_a_bundle_opened_through_a_link_to_its_folder_is_fine(tmp_path):
    """The root itself may be a link (``bundles/current -> v3``); what is inside may not."""
    root = small_bundle(tmp_path)
    (tmp_path / "current").symlink_to(root, target_is_directory=True)
    assert Bundle.open(tmp_path / "current").artifact("fp32").file == "model.fp32.onnx"


@pytest.mark.parametrize(
    "name", ["evil.txt", "model.extra.onnx", "docs/evil.txt", ".hidden", "model.int8.engine"]
)
def test_an_unlisted_file_is_refused(tmp_path, name):
    root = small_bundle(tmp_path)
    (root / name).write_bytes(b"not in the manifest")
    with pytest.raises(BundleError, match=f"holds {name}, which manifest.json does not list"):
        Bundle.open(root)


def test_an_unlisted_file_with_an_odd_name_is_named_on_one_line(tmp_path):
    root = small_bundle(tmp_path)
    (root / "two\nlines.onnx").write_bytes(b"x")
    with pytest.raises(BundleError, match=r"holds 'two\\nlines.onnx', which") as info:
        Bundle.open(root)
    assert "\n" not in info.value.message
    os.unlink(root / "two\nlines.onnx")
    with open(os.path.join(os.fsencode(root), b"latin-\xe9.onnx"), "wb"):  # not UTF-8
        pass
    with pytest.raises(BundleError, match=r"holds 'latin-\\udce9.onnx', which"):
        Bundle.open(root)


def test_a_name_that_is_no_file_name_is_refused(tmp_path):
    root = small_bundle(tmp_path)
    point_fp32_at(root, "\ud800.onnx", sha256_file(evil(root)))  # a lone surrogate, valid JSON
    with pytest.raises(BundleError, match="not a valid file name"):
        Bundle.open(root)


def test_a_fifo_is_refused(tmp_path):
    root = small_bundle(tmp_path)
    os.mkfifo(root / "pipe")
    with pytest.raises(BundleError, match="pipe is not a regular file"):
        Bundle.open(root)


def test_an_empty_sub_folder_is_not_a_file(tmp_path):
    root = small_bundle(tmp_path)
    (root / "empty").mkdir()
    Bundle.open(root)


@pytest.mark.parametrize(
    "name", ["../elsewhere/evil.onnx", "/etc/passwd", "docs/../model.fp32.onnx", "a\\b", "docs"]
)
def test_path_refuses_a_name_leading_outside(tmp_path, name):
    bundle = Bundle.open(small_bundle(tmp_path))
    if name == "docs":  # the name is fine; the folder on the way is a link
        shutil.move(bundle.root / "docs", tmp_path / "elsewhere" / "docs")
        (bundle.root / "docs").symlink_to(tmp_path / "elsewhere" / "docs")
        name = "docs/notes.txt"
    with pytest.raises(BundleError, match="not a plain relative path|is a symbolic link"):
        bundle.path(name)


def test_path_of_a_plain_name(tmp_path):
    bundle = Bundle.open(small_bundle(tmp_path))
    assert bundle.path("docs/notes.txt") == bundle.root / "docs" / "notes.txt"
    assert bundle.path("not-yet-there.json") == bundle.root / "not-yet-there.json"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda m: m.update(artifacts=["fp32"]), "'artifacts' must be an object, got list"),
        (lambda m: m.update(files="model.fp32.onnx"), "'files' must be an object, got str"),
        (lambda m: m["artifacts"].update(fp32="model.fp32.onnx"), "'fp32' must be an object"),
        (lambda m: m["artifacts"]["fp32"].update(file=7), "field 'file' is int, not a string"),
        (lambda m: m["artifacts"]["fp32"].pop("sha256"), "field 'sha256' is missing"),
        (lambda m: m["artifacts"]["fp32"].pop("target"), "field 'target' is missing"),
        (lambda m: m["artifacts"]["fp32"].update(precision=None), "'precision' is NoneType"),
        (lambda m: m["files"].update({"report.json": 3}), "files['report.json'] is not a SHA"),
        (lambda m: m["files"].update({"report.json": "XYZ"}), "is not a SHA-256 hex digest"),
        (lambda m: m["files"].update({MANIFEST: "0" * 64}), "lists itself"),
        (lambda m: m.update(calibration=["x"]), "'calibration' must be an object"),
        (lambda m: m.update(build="yesterday"), "'build' must be an object"),
        (
            lambda m: m["calibration"].update(file="../elsewhere/evil.onnx"),
            "calibration.file '../elsewhere/evil.onnx' is not a plain",
        ),
        (lambda m: m["calibration"].update(file="absent.json"), "calibration.file names 'absent"),
        (lambda m: m["report"].update(json=["report.json"]), "report.json must be a file name"),
        (lambda m: m.update(accuracy={"models": {"fp32": {}}}), "accuracy.models must map"),
        (lambda m: m.update(engines=["x.engine"]), "'engines' must be an object, got list"),
        (lambda m: m.update(engines={"x.engine": 1}), "record 'x.engine' is int"),
        (
            lambda m: m.update(engines={"x.engine": {"artifact": "fp32"}}),
            "precision missing or not strings",
        ),
    ],
)
def test_a_field_of_the_wrong_type_is_a_bundle_error(tmp_path, mutate, message):
    root = small_bundle(tmp_path)
    manifest = read_manifest(root)
    mutate(manifest)
    write_manifest(root, manifest)
    with pytest.raises(BundleError) as info:
        Bundle.open(root)
    assert message in info.value.message


# -- TensorRT engines: written into the bundle after the build, recorded under "engines" --------
ENGINE = "model.fp32.onnx.10.3.0.orin.sm87.fp16.gpu.0123abcd.engine"


def record_engine(root: Path, name: str = ENGINE, **record) -> None:
    m = read_manifest(root)
    base = {"path": name, "artifact": "fp32", "precision": "fp16", "sha256": "0" * 64}
    m.setdefault("engines", {})[name] = base | record
    write_manifest(root, m)


def test_a_recorded_engine_and_its_timing_cache_are_allowed(tmp_path):
    root = small_bundle(tmp_path)
    (root / ENGINE).write_bytes(b"engine")
    (root / "timing.10.3.0.orin.sm87.cache").write_bytes(b"cache")
    record_engine(root, timing_cache=str(root / "timing.10.3.0.orin.sm87.cache"))
    assert ENGINE in Bundle.open(root).manifest["engines"]


def test_an_engine_or_timing_cache_not_recorded_is_refused(tmp_path):
    root = small_bundle(tmp_path)
    (root / ENGINE).write_bytes(b"engine")
    with pytest.raises(BundleError, match=f"holds {ENGINE}, which"):
        Bundle.open(root)
    record_engine(root, timing_cache="/somewhere/else/timing.cache")
    Bundle.open(root)
    (root / "timing.10.3.0.orin.sm87.cache").write_bytes(b"cache")
    with pytest.raises(BundleError, match="holds timing.10.3.0.orin.sm87.cache, which"):
        Bundle.open(root)


def test_a_recorded_engine_that_is_a_link_is_refused(tmp_path):
    root = small_bundle(tmp_path)
    (tmp_path / "elsewhere" / ENGINE).write_bytes(b"engine")
    (root / ENGINE).symlink_to(tmp_path / "elsewhere" / ENGINE)
    record_engine(root)
    with pytest.raises(BundleError, match=f"{ENGINE} is a symbolic link"):
        Bundle.open(root)


@pytest.mark.parametrize(
    "name, path",
    [
        ("../elsewhere/x.engine", "../elsewhere/x.engine"),
        ("docs/x.engine", "docs/x.engine"),
        ("evil.onnx", "evil.onnx"),  # an engine record does not let any file in
        ("model.fp32.onnx", "model.fp32.onnx"),
        (ENGINE, "/elsewhere/" + ENGINE),
        (ENGINE, "../" + ENGINE),
    ],
)
def test_an_engine_record_naming_another_path_is_refused(tmp_path, name, path):
    root = small_bundle(tmp_path)
    record_engine(root, name=name, path=path)
    with pytest.raises(BundleError, match="engine"):
        Bundle.open(root)


def test_a_timing_cache_record_lets_in_only_a_cache(tmp_path):
    root = small_bundle(tmp_path)
    (root / "evil.onnx").write_bytes(b"x")
    record_engine(root, timing_cache=str(root / "evil.onnx"))
    with pytest.raises(BundleError, match="holds evil.onnx"):
        Bundle.open(root)


# -- writing --------------------------------------------------------------------------------
def test_hash_files_refuses_a_link(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / MANIFEST).write_text("{}")  # only the top-level manifest is skipped
    assert sorted(hash_files(tmp_path)) == ["a.txt", f"sub/{MANIFEST}"]
    (tmp_path / "b.txt").symlink_to(tmp_path / "a.txt")
    with pytest.raises(BundleError, match="b.txt is a symbolic link"):
        hash_files(tmp_path)


@pytest.mark.parametrize("name", ["../escaped.onnx", "/tmp/abs.onnx", "a\\b.onnx", MANIFEST])
def test_write_bundle_refuses_a_name_outside_the_bundle(tmp_path, name):
    with pytest.raises(BundleError):
        write_bundle(tmp_path / "b", {name: b"x"}, SPEC, {})
    assert not (tmp_path / "escaped.onnx").exists() and not (tmp_path / "b").exists()


def test_write_bundle_copies_a_linked_source_as_bytes(tmp_path):
    model = tiny_classifier_onnx(tmp_path / "tiny.onnx")
    (tmp_path / "link.onnx").symlink_to(model)
    root = write_bundle(
        tmp_path / "b",
        {"model.fp32.onnx": tmp_path / "link.onnx"},
        SPEC,
        {"fp32": {"file": "model.fp32.onnx", "precision": "fp32", "target": "any"}},
    )
    assert not (root / "model.fp32.onnx").is_symlink()
    assert Bundle.open(root).artifact("fp32").sha256 == sha256_file(model)


def test_write_bundle_refuses_an_artifact_without_a_file(tmp_path):
    with pytest.raises(BundleError, match="artifact 'fp32' names None"):
        write_bundle(tmp_path / "b", {"m.onnx": b"x"}, SPEC, {"fp32": {"precision": "fp32"}})


# -- the commands: one line, exit 2, nothing outside the bundle opened ---------------------------
_OPENED: list[str] | None = None
_HOOKED = False


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _OPENED is not None and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.path.abspath(os.fsdecode(args[0])))


@pytest.fixture
def opened():
    """Every file Python opens during the test (an audit hook, installed once)."""
    global _OPENED, _HOOKED
    if not _HOOKED:
        sys.addaudithook(_audit)
        _HOOKED = True
    _OPENED = []
    yield _OPENED
    _OPENED = None


def _traversal(root: Path) -> str:
    point_fp32_at(root, "../elsewhere/evil.onnx", sha256_file(evil(root)))
    return "'../elsewhere/evil.onnx' is not a plain relative path"


def _unlisted_artifact(root: Path) -> str:
    shutil.copyfile(evil(root), root / "evil.onnx")
    point_fp32_at(root, "evil.onnx", sha256_file(evil(root)), listed=False)
    return "names 'evil.onnx', which manifest.json does not list"


def _linked_model(root: Path) -> str:
    return f"{_link_model(root)} is a symbolic link"


def _extra_file(root: Path) -> str:
    (root / "model.extra.onnx").write_bytes(b"x")
    return "holds model.extra.onnx, which manifest.json does not list"


COMMANDS = {
    "inspect": [],
    "run": ["--source", "synthetic://?fps=60&size=64x48", "--max-frames", "2", "--threads", "1"],
    "profile": ["-n", "2", "--warmup", "0", "--threads", "1"],
}


@pytest.mark.parametrize("tamper", [_traversal, _unlisted_artifact, _linked_model, _extra_file])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_commands_refuse_with_one_line_and_exit_2(
    tmp_path, capsys, monkeypatch, opened, command, tamper
):
    from edgevision.cli.app import main

    root = small_bundle(tmp_path)
    message = tamper(root)
    monkeypatch.setenv("COLUMNS", "1000")  # rich would wrap the line at 80 columns
    opened.clear()
    with pytest.raises(SystemExit) as info:
        main([command, str(root), *COMMANDS[command]])
    err = capsys.readouterr().err
    assert info.value.code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("fix: ")
    assert message in lines[0] and "Traceback" not in err
    outside = os.path.abspath(tmp_path / "elsewhere")
    assert not [p for p in opened if p.startswith(outside + os.sep)]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_commands_still_run_a_sound_bundle(tmp_path, capsys, command):
    from edgevision.cli.app import main

    root = small_bundle(tmp_path)
    try:
        main([command, str(root), *COMMANDS[command]])
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err


# -- any manifest at all: a consistent bundle or an EdgeVisionError, nothing else ----------------
NAMES = [
    "model.fp32.onnx",
    "calibration.json",
    "report.json",
    "docs/notes.txt",
    "link.onnx",  # a symbolic link in the "linked" bundle
    "linkdir/evil.onnx",  # through a linked folder
    "../elsewhere/evil.onnx",
    "docs/../model.fp32.onnx",
    "./model.fp32.onnx",
    "/etc/hostname",
    "ABSOLUTE_EVIL",
    "C:\\evil.onnx",
    "docs//notes.txt",
    "",
    "nul\x00.onnx",
    "\ud800.onnx",
    "absent.onnx",
    ENGINE,
]
TEXT = st.text(st.characters(blacklist_categories=()), max_size=8)  # surrogates too
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def fuzz_bundles(tmp_path_factory):
    """A sound bundle, and the same with a linked file and a linked folder in it."""
    base = tmp_path_factory.mktemp("fuzz")
    sound = small_bundle(base)
    linked = base / "linked"
    shutil.copytree(sound, linked)
    (linked / "link.onnx").symlink_to(evil(sound))
    (linked / "linkdir").symlink_to(base / "elsewhere", target_is_directory=True)
    good = read_manifest(sound)
    digests = {n: sha256_file(sound / n) for n in good["files"]}
    digests["link.onnx"] = digests["linkdir/evil.onnx"] = sha256_file(evil(sound))
    return {"sound": sound, "linked": linked, "manifest": good, "digests": digests}


@st.composite
def manifests(draw, good: dict, digests: dict, evil_path: str):
    """The real manifest with a few of its parts replaced by odd ones, or any JSON at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    m = json.loads(json.dumps(good))
    name = st.sampled_from(NAMES).map(lambda n: evil_path if n == "ABSOLUTE_EVIL" else n)
    digest = st.one_of(
        st.sampled_from(sorted(set(digests.values()))),
        st.text("0123456789abcdef", min_size=64, max_size=64),
        JSON,
    )
    for _ in range(draw(st.integers(1, 4))):
        where = draw(
            st.sampled_from(["file", "sha", "files", "drop", "section", "engine", "path", "spec"])
        )
        art = m["artifacts"].setdefault("fp32", {}) if isinstance(m.get("artifacts"), dict) else {}
        if where == "file" and isinstance(art, dict):
            art["file"] = draw(name | JSON)
        elif where == "sha" and isinstance(art, dict):
            file = art.get("file")
            known = isinstance(file, str) and file in digests
            art["sha256"] = digests[file] if known and draw(st.booleans()) else draw(digest)
        elif where == "files" and isinstance(m.get("files"), dict):
            n = draw(name)
            m["files"][n] = digests.get(n) if draw(st.booleans()) else draw(digest)
        elif where == "drop":
            section = draw(st.sampled_from(["files", "artifacts", "spec", "calibration"]))
            m.pop(section, None)
        elif where == "section":
            section = draw(
                st.sampled_from(["files", "artifacts", "build", "accuracy", "report", "spec"])
            )
            m[section] = draw(JSON)
        elif where == "engine":
            key = draw(name)
            record = {"path": draw(name | JSON), "artifact": "fp32", "precision": "fp16"}
            m["engines"] = {key: draw(st.just(record) | JSON)}
        elif where == "spec" and isinstance(m.get("spec"), dict):
            m["spec"][draw(st.sampled_from([*good["spec"], "num_classes"]))] = draw(JSON)
        elif where == "path":
            m.setdefault("calibration", {})
            if isinstance(m["calibration"], dict):
                m["calibration"]["file"] = draw(name | JSON)
    return m


def _consistent(bundle: Bundle) -> None:
    root = os.path.realpath(bundle.root)
    for art in bundle.artifacts.values():
        path = bundle.path(art.file)
        assert os.path.realpath(path).startswith(root + os.sep)
        assert not path.is_symlink() and path.is_file()
        assert bundle.manifest["files"][art.file] == art.sha256 == sha256_file(path)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_manifest_opens_consistently_or_raises_a_user_error(fuzz_bundles, opened, data):
    which = data.draw(st.sampled_from(["sound", "linked"]))
    root = fuzz_bundles[which]
    evil_path = str(evil(fuzz_bundles["sound"]))
    good, digests = fuzz_bundles["manifest"], fuzz_bundles["digests"]
    manifest = data.draw(manifests(good, digests, evil_path))
    (root / MANIFEST).write_text(json.dumps(manifest))
    opened.clear()
    try:
        bundle = Bundle.open(root)
    except EdgeVisionError:
        pass
    else:
        assert which == "sound"
        _consistent(bundle)
    outside = os.path.abspath(evil(fuzz_bundles["sound"]).parent)
    assert not [p for p in opened if p.startswith(outside + os.sep)]
