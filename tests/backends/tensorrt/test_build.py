"""build_engine against the recording fake of tensorrt 10.3 / 11.x."""

from __future__ import annotations

import base64
import json
import sys

import onnx
import pytest

from edgevision.backends.tensorrt import build as build_mod
from edgevision.backends.tensorrt.build import build_engine
from edgevision.backends.tensorrt.naming import default_engine_cache
from edgevision.backends.tensorrt.staleness import StaleEngineError
from edgevision.bundle import Bundle, write_bundle
from edgevision.errors import BackendError, BuildError, EdgeVisionError
from edgevision.spec import ModelSpec
from tests.backends.tensorrt.fakes import engine_blob
from tests.helpers import tiny_classifier_onnx


def test_int8_flags_follow_the_tensorrt_version(trt, trt_bundle):
    record = build_engine(trt_bundle, max_batch=4)
    blob = engine_blob(record.path)
    if trt.__version__ == "10.3.0":
        # weakly typed network (explicit batch is implicit in 10.x), INT8 from the Q/DQ nodes
        assert blob["network_flags"] == 0 and blob["flags"] == ["INT8"]
        assert record.strongly_typed is False
    else:
        # 10.12+ (precision flags deprecated) and 11 (removed): strongly typed, no flags
        assert blob["network_flags"] == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        assert blob["flags"] == [] and record.strongly_typed is True
    assert record.precision == "int8" and record.onnx_file == "model.int8.trt.onnx"
    assert blob["profiling_verbosity"] == "DETAILED"  # for the engine inspector


def test_fp16_fallback_adds_fp16_on_tensorrt_10_3(make_trt, cudart, trt_bundle):
    make_trt("10.3.0")
    blob = engine_blob(build_engine(trt_bundle, fp16_fallback=True).path)
    assert blob["flags"] == ["FP16", "INT8"]


@pytest.mark.parametrize("version", ["10.16.0", "11.2.0"])
@pytest.mark.parametrize(
    "kwargs, onnx_file",
    [({"fp16_fallback": True}, "model.int8.trt.onnx"), ({"precision": "fp16"}, "model.fp32.onnx")],
)
def test_strongly_typed_fp16_is_autocast_not_a_flag(
    make_trt, cudart, autocast, trt_bundle, version, kwargs, onnx_file
):
    make_trt(version)
    record = build_engine(trt_bundle, **kwargs)
    blob = engine_blob(record.path)
    assert blob["flags"] == [] and record.strongly_typed
    (call,) = autocast
    assert call["onnx_path"] == str(trt_bundle / onnx_file)
    assert call["low_precision_type"] == "fp16" and call["keep_io_types"] is True
    parsed = onnx.load_from_string(base64.b64decode(blob["onnx"]))
    assert parsed.doc_string == "autocast:fp16"  # the parser got the converted model


@pytest.mark.parametrize("kwargs", [{"fp16_fallback": True}, {"precision": "fp16"}])
def test_strongly_typed_fp16_without_modelopt_says_what_to_install(
    make_trt, cudart, trt_bundle, kwargs
):
    make_trt("10.16.0")
    with pytest.raises(BuildError, match="strongly typed TensorRT build needs the ONNX") as exc:
        build_engine(trt_bundle, **kwargs)
    assert "nvidia-modelopt[onnx]" in exc.value.fix


def test_fp16_and_fp32_build_the_fp32_model(make_trt, cudart, trt_bundle):
    make_trt("10.3.0")
    fp16 = build_engine(trt_bundle, precision="fp16")
    fp32 = build_engine(trt_bundle, precision="fp32")
    assert fp16.onnx_file == fp32.onnx_file == "model.fp32.onnx"
    assert engine_blob(fp16.path)["flags"] == ["FP16"]
    assert engine_blob(fp32.path)["flags"] == []
    assert fp16.path != fp32.path


def test_profile_workspace_and_opt_level(trt, trt_bundle):
    record = build_engine(
        trt_bundle, workspace_mb=256, min_batch=2, opt_batch=4, max_batch=16, opt_level=5
    )
    blob = engine_blob(record.path)
    assert blob["io"][0]["profile"] == [[2, 3, 32, 48], [4, 3, 32, 48], [16, 3, 32, 48]]
    assert blob["pools"] == {"WORKSPACE": 256 << 20}
    assert blob["opt_level"] == 5 and blob["device_type"] == "GPU"
    assert (record.min_batch, record.opt_batch, record.max_batch) == (2, 4, 16)
    assert record.input_name == "input"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"min_batch": 4, "opt_batch": 2}, "not ordered"),
        ({"max_batch": 0}, "not ordered"),
        ({"opt_level": 6}, "optimisation level"),
        ({"workspace_mb": 0}, "workspace_mb"),
        ({"precision": "int4"}, "unknown TensorRT precision"),
        ({"precision": "fp32", "fp16_fallback": True}, "fp16_fallback applies"),
        ({"dla_core": -1}, "dla_core"),
        # DLA: no dynamic dimensions, FP16/INT8 only (the default range is 1/1/8)
        ({"dla_core": 0}, r"DLA core 0 needs a fixed batch.*min=1 opt=1 max=8"),
        ({"dla_core": 0, "min_batch": 2, "opt_batch": 2, "max_batch": 4}, "fixed batch"),
        ({"dla_core": 0, "max_batch": 1, "precision": "fp32"}, "FP16 and INT8 only"),
    ],
)
def test_bad_options_are_refused_before_tensorrt_is_needed(trt_bundle, monkeypatch, kwargs, match):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BuildError, match=match):
        build_engine(trt_bundle, **kwargs)


def test_missing_tensorrt_says_how_to_get_it(trt_bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendError, match="TensorRT is not installed") as exc:
        build_engine(trt_bundle)
    assert "JetPack" in exc.value.fix


def test_dla_core_with_gpu_fallback(make_trt, cudart, gpu, trt_bundle):
    make_trt("10.3.0")
    gpu.dla_cores = 2
    record = build_engine(trt_bundle, dla_core=1, max_batch=1)
    blob = engine_blob(record.path)
    assert blob["device_type"] == "DLA" and blob["dla_core"] == 1
    assert "GPU_FALLBACK" in blob["flags"]
    assert blob["io"][0]["profile"] == [[1, 3, 32, 48]] * 3  # min = opt = max
    assert record.device == "dla1" and ".dla1." in record.file


def test_dla_fp16_engine(make_trt, cudart, gpu, trt_bundle):
    make_trt("10.3.0")
    gpu.dla_cores = 1
    record = build_engine(trt_bundle, precision="fp16", dla_core=0, min_batch=2, opt_batch=2,
                          max_batch=2)  # fmt: skip
    assert engine_blob(record.path)["flags"] == ["FP16", "GPU_FALLBACK"]


def test_dla_core_the_device_lacks_is_refused(trt, gpu, trt_bundle):
    gpu.dla_cores = 0
    with pytest.raises(BuildError, match="has 0 DLA core"):
        build_engine(trt_bundle, dla_core=0, max_batch=1)


def test_name_and_manifest_record(trt, trt_bundle):
    record = build_engine(trt_bundle)
    version = trt.__version__
    assert record.file == (
        f"model.int8.trt.onnx.{version}.orin-16sm-61g.sm87.int8.gpu.{record.onnx_sha256[:8]}.engine"
    )
    assert (record.multiprocessors, record.memory_gib) == (16, 61)
    assert record.path.parent == trt_bundle and record.location == "bundle"
    bundle = Bundle.open(trt_bundle)  # verify=True: the bundle's hashes are still valid
    saved = bundle.manifest["engines"][record.file]
    assert saved["path"] == record.file  # relative inside the bundle
    assert saved["sha256"] == record.sha256 and saved["gpu_name"] == "Orin"
    assert saved["trt_version"] == version and saved["compute_capability"] == "8.7"
    assert saved["multiprocessors"] == 16 and saved["memory_gib"] == 61
    assert record.file not in bundle.manifest["files"]  # engines are not hashed bundle files


def test_engine_is_written_atomically(trt, trt_bundle, monkeypatch):
    import edgevision.fileio as fileio

    real_replace = fileio.os.replace

    def replace(src, dst):
        if str(dst).endswith(".engine"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", replace)
    with pytest.raises(OSError, match="No space"):
        build_engine(trt_bundle)
    monkeypatch.undo()
    leftovers = [p.name for p in trt_bundle.iterdir() if "engine" in p.name]
    assert leftovers == []  # neither a half engine nor its temp file
    assert "engines" not in Bundle.open(trt_bundle).manifest


def test_read_only_bundle_gets_the_engine_cache(trt, trt_bundle, tmp_path, monkeypatch):
    real = build_mod.atomic_write_bytes

    def read_only_bundle(path, data):
        if path.parent == trt_bundle:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, data)

    monkeypatch.setattr(build_mod, "atomic_write_bytes", read_only_bundle)
    manifest_before = (trt_bundle / "manifest.json").read_bytes()
    record = build_engine(trt_bundle)
    cache = default_engine_cache()
    assert cache == tmp_path / "engine-cache"
    assert record.location == "cache" and record.path.parent == cache
    assert (trt_bundle / "manifest.json").read_bytes() == manifest_before
    sidecar = json.loads((cache / (record.file + ".json")).read_text())
    assert sidecar["path"] == str(record.path) and sidecar["sha256"] == record.sha256


def test_explicit_engine_cache(trt, trt_bundle, tmp_path):
    record = build_engine(trt_bundle, engine_cache=tmp_path / "mine")
    assert record.path.parent == tmp_path / "mine" and record.location == "cache"
    assert "engines" not in Bundle.open(trt_bundle).manifest


def test_timing_cache_loaded_and_saved(trt, trt_bundle, tmp_path):
    cache = tmp_path / "tc" / "timing.cache"
    first = build_engine(trt_bundle, timing_cache=cache)
    assert first.timing_cache == str(cache)
    assert json.loads(cache.read_bytes()[8:]) == [1, "Orin"]
    build_engine(trt_bundle, precision="fp32", timing_cache=cache)  # loads it, adds to it
    assert json.loads(cache.read_bytes()[8:]) == [2, "Orin"]
    assert list(cache.parent.iterdir()) == [cache]  # written atomically, no temp left


def test_unusable_timing_cache_is_replaced_not_fatal(trt, trt_bundle, tmp_path):
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"garbage")
    build_engine(trt_bundle, timing_cache=cache)
    assert json.loads(cache.read_bytes()[8:]) == [1, "Orin"]


def test_timing_cache_the_bindings_raise_on_is_replaced(
    make_trt, cudart, gpu, trt_bundle, tmp_path, monkeypatch
):
    # Whether TensorRT's create_timing_cache returns None or raises on a corrupt file is not
    # documented; either way the build goes on with an empty cache.
    trt = make_trt("10.3.0")
    builder = trt.Builder(trt.Logger())
    config_type = type(builder.create_builder_config())
    real = config_type.create_timing_cache

    def create(self, data):
        if bytes(data) == b"\xffcorrupt":
            raise RuntimeError("Failed to deserialize the timing cache")
        return real(self, data)

    monkeypatch.setattr(config_type, "create_timing_cache", create)
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"\xffcorrupt")
    build_engine(trt_bundle, timing_cache=cache)
    assert json.loads(cache.read_bytes()[8:]) == [1, "Orin"]


def test_up_to_date_engine_is_reused(trt, trt_bundle):
    first = build_engine(trt_bundle)
    mtime = first.path.stat().st_mtime_ns
    again = build_engine(trt_bundle)
    assert again == first and first.path.stat().st_mtime_ns == mtime


def test_other_settings_need_rebuild_if_stale(trt, trt_bundle):
    first = build_engine(trt_bundle, max_batch=8)
    with pytest.raises(StaleEngineError, match="max batch: built with 8, asked for 16"):
        build_engine(trt_bundle, max_batch=16)
    rebuilt = build_engine(trt_bundle, max_batch=16, rebuild_if_stale=True)
    assert rebuilt.path == first.path and rebuilt.max_batch == 16
    manifest = Bundle.open(trt_bundle).manifest["engines"]
    assert list(manifest) == [first.file] and manifest[first.file]["max_batch"] == 16


def test_corrupted_engine_is_stale(trt, trt_bundle):
    first = build_engine(trt_bundle)
    first.path.write_bytes(b"tampered")
    with pytest.raises(StaleEngineError, match="does not match its recorded SHA-256"):
        build_engine(trt_bundle)
    assert build_engine(trt_bundle, rebuild_if_stale=True).sha256 == first.sha256


def _bundle_with_ops(root, op_names):
    """The tiny classifier plus nodes the fake parser does not support."""
    path = tiny_classifier_onnx(root / "m.onnx")
    model = onnx.load(path)
    for i, op in enumerate(op_names):
        node = onnx.helper.make_node(op, ["logits"], [f"extra{i}"], name=f"custom_{i}")
        model.graph.node.append(node)
    onnx.save(model, path)
    spec = ModelSpec(labels=("a", "b", "c"), input_size=(32, 48))
    art = {"file": "model.int8.trt.onnx", "precision": "int8", "target": "tensorrt"}
    return write_bundle(root / "b", {"model.int8.trt.onnx": path}, spec, {"int8-trt": art})


def test_every_parser_error_is_reported_with_its_node(trt, tmp_path):
    bundle = _bundle_with_ops(tmp_path, ["Mish", "GridSample"])
    with pytest.raises(BuildError) as exc:
        build_engine(bundle)
    msg = str(exc.value)
    assert "rejected model.int8.trt.onnx (2 error(s))" in msg
    assert "node custom_0 (Mish): UNSUPPORTED_NODE: No importer registered for op: Mish" in msg
    assert "node custom_1 (GridSample)" in msg
    assert isinstance(exc.value, EdgeVisionError)


def test_input_shape_must_match_the_spec(trt, tmp_path):
    path = tiny_classifier_onnx(tmp_path / "m.onnx", size=(32, 48))
    spec = ModelSpec(labels=("a", "b", "c"), input_size=(64, 64))
    art = {"file": "model.int8.trt.onnx", "precision": "int8", "target": "tensorrt"}
    bundle = write_bundle(tmp_path / "b", {"model.int8.trt.onnx": path}, spec, {"int8-trt": art})
    with pytest.raises(BuildError, match=r"has shape \[-1, 3, 32, 48\].*\['batch', 3, 64, 64\]"):
        build_engine(bundle)


def test_fixed_batch_model_needs_a_matching_profile(trt, tmp_path):
    path = tiny_classifier_onnx(tmp_path / "m.onnx")
    model = onnx.load(path)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(model, path)
    spec = ModelSpec(labels=("a", "b", "c"), input_size=(32, 48))
    art = {"file": "model.int8.trt.onnx", "precision": "int8", "target": "tensorrt"}
    bundle = write_bundle(tmp_path / "b", {"model.int8.trt.onnx": path}, spec, {"int8-trt": art})
    with pytest.raises(BuildError, match="fixed batch of 1"):
        build_engine(bundle, max_batch=8)
    assert build_engine(bundle, max_batch=1).max_batch == 1


def test_failed_build_quotes_the_tensorrt_log(trt, gpu, trt_bundle):
    gpu.fail_build = True
    with pytest.raises(BuildError, match="ERROR: fake: out of workspace"):
        build_engine(trt_bundle)


def test_bundle_without_a_tensorrt_artifact(trt, tmp_path):
    from tests.helpers import tiny_bundle

    with pytest.raises(EdgeVisionError, match="no artifact 'int8-trt'"):
        build_engine(tiny_bundle(tmp_path))


def test_no_cuda_memory_module(make_trt, trt_bundle, monkeypatch):
    make_trt("10.3.0")
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart", "pycuda",
                 "pycuda.driver"):  # fmt: skip
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(BackendError, match="no CUDA memory module") as exc:
        build_engine(trt_bundle)
    assert "cuda-python" in exc.value.fix and "pycuda" in exc.value.fix


def _float_node_bundle(tmp_path):
    """A bundle whose int8-trt artifact keeps nodes in float (a detector's head, a budget)."""
    from tests.backends.tensorrt.bundles import ARTIFACTS, SPEC

    root = tmp_path / "float-nodes"
    root.mkdir()
    fp32 = tiny_classifier_onnx(root / "fp32.onnx", num_classes=3)
    artifacts = {k: dict(v) for k, v in ARTIFACTS.items()}
    artifacts["int8-trt"]["float_nodes"] = ["/head/Conv"]
    files = {"model.fp32.onnx": fp32, "model.int8.trt.onnx": fp32}
    return write_bundle(root / "bundle", files, SPEC, artifacts)


def test_fp16_is_on_by_default_when_the_int8_artifact_keeps_float_nodes(
    make_trt, cudart, tmp_path, trt_bundle
):
    make_trt("10.3.0")
    bundle = _float_node_bundle(tmp_path)
    record = build_engine(bundle)
    assert engine_blob(record.path)["flags"] == ["FP16", "INT8"] and record.fp16_fallback
    # no float nodes: INT8 alone, as before; an explicit False is honoured
    assert engine_blob(build_engine(trt_bundle).path)["flags"] == ["INT8"]
    off = build_engine(bundle, fp16_fallback=False, rebuild_if_stale=True)
    assert engine_blob(off.path)["flags"] == ["INT8"] and not off.fp16_fallback
