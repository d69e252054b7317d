"""A user's segmentation ONNX against the contract: what passes, what is refused and how."""

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from edgevision.errors import BuildError, SpecError
from edgevision.spec import ModelSpec
from edgevision.tasks.segment.onnx_contract import check_segmenter_onnx, head_float_nodes
from tests.segment_helpers import save, segmentation_spec, square_segmenter_model


def _rename_output(model: onnx.ModelProto, new: str) -> onnx.ModelProto:
    old = model.graph.output[0].name
    model.graph.output[0].name = new
    for node in model.graph.node:
        node.output[:] = [new if x == old else x for x in node.output]
    return model


def _refused(tmp_path: Path, model: onnx.ModelProto, spec: ModelSpec, error=BuildError):
    with pytest.raises(error) as info:
        check_segmenter_onnx(save(model, tmp_path / "m.onnx"), spec)
    return info.value.message, info.value.fix or ""


def test_logits_at_stride_8_pass(tmp_path):
    path = save(square_segmenter_model(64, 96), tmp_path / "m.onnx")
    io = check_segmenter_onnx(path, segmentation_spec())
    assert (io.kind, io.output_name, io.classes) == ("logits", "logits", 2)
    assert io.output_size == (8, 12) and io.stride == (8, 8)
    assert io.input_shape == (None, 3, 64, 96) and io.input_name == "input"


def test_a_class_map_passes_and_stride_2_logits_too(tmp_path):
    path = save(square_segmenter_model(64, 96, output="classmap"), tmp_path / "c.onnx")
    io = check_segmenter_onnx(path, segmentation_spec(output="classmap"))
    assert (io.output_name, io.output_size, io.stride) == ("classes", (64, 96), (1, 1))
    path = save(square_segmenter_model(64, 96, stride=2, batch=1), tmp_path / "s2.onnx")
    io = check_segmenter_onnx(path, segmentation_spec())
    assert io.output_size == (32, 48) and io.input_shape[0] == 1


def test_dynamic_input_size_is_inferred_at_the_spec_size(tmp_path):
    model = square_segmenter_model(64, 96)
    for d in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        d.dim_param = "hw"
    for d in model.graph.output[0].type.tensor_type.shape.dim[2:]:
        d.dim_param = "out_hw"
    io = check_segmenter_onnx(save(model, tmp_path / "m.onnx"), segmentation_spec())
    assert io.input_shape == (None, 3, None, None) and io.output_size == (8, 12)


def test_a_wrong_output_name_is_refused_with_the_contract(tmp_path):
    msg, fix = _refused(
        tmp_path, _rename_output(square_segmenter_model(64, 96), "out"), segmentation_spec()
    )
    assert "'out'" in msg and "not 'logits'" in msg
    assert "rename" in fix and "[batch, C, h, w]" in fix and "'classes'" in fix


def test_the_other_kinds_output_asks_to_fix_the_spec(tmp_path):
    msg, fix = _refused(
        tmp_path, square_segmenter_model(64, 96, output="classmap"), segmentation_spec(), SpecError
    )
    assert "'classes'" in msg and "'logits'" in msg
    assert '"output": "classmap"' in fix
    msg, fix = _refused(
        tmp_path, square_segmenter_model(64, 96), segmentation_spec(output="classmap"), SpecError
    )
    assert '"output": "logits"' in fix


def test_a_logits_shaped_output_under_another_name_is_recognised(tmp_path):
    model = _rename_output(square_segmenter_model(64, 96), "scores")
    msg, fix = _refused(tmp_path, model, segmentation_spec(output="classmap"))
    assert "looks like a logits output" in fix and "'logits'" in fix


def test_extra_outputs_are_refused(tmp_path):
    model = square_segmenter_model(64, 96)
    model.graph.output.append(
        helper.make_tensor_value_info("conv1_relu", TensorProto.FLOAT, ["N", 4, 16, 24])
    )
    msg, fix = _refused(tmp_path, model, segmentation_spec())
    assert "2 outputs" in msg and "the contract has one" in msg
    assert "export only 'logits'" in fix and "aux" in fix


def test_a_class_count_that_differs_from_the_spec_is_refused(tmp_path):
    spec = segmentation_spec(labels=("background", "square", "disc"))
    msg, fix = _refused(tmp_path, square_segmenter_model(64, 96), spec)
    assert "2 classes" in msg and "3 labels" in msg and "spec written for this model" in fix


def test_wrong_rank_and_type_are_refused(tmp_path):
    model = square_segmenter_model(64, 96)
    dims = model.graph.output[0].type.tensor_type.shape.dim
    del dims[1]  # declared [N, 8, 12]: rank 3 under the logits name
    msg, fix = _refused(tmp_path, model, segmentation_spec())
    assert "rank 3" in msg and "[batch, C, h, w]" in msg and "classmap" in fix

    model = square_segmenter_model(64, 96, output="classmap")
    cast = next(n for n in model.graph.node if n.op_type == "Cast")
    cast.attribute[0].i = TensorProto.INT64
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.INT64
    msg, fix = _refused(tmp_path, model, segmentation_spec(output="classmap"))
    assert "INT64" in msg and "uint8" in msg and "Cast" in fix


def test_a_class_map_below_the_input_size_is_refused(tmp_path):
    model = square_segmenter_model(64, 96, output="classmap")
    model.graph.node.remove(next(n for n in model.graph.node if n.op_type == "Resize"))
    argmax = next(n for n in model.graph.node if n.op_type == "ArgMax")
    argmax.input[0] = "low_logits"
    dims = model.graph.output[0].type.tensor_type.shape.dim
    dims[1].dim_value, dims[2].dim_value = 8, 12
    msg, fix = _refused(tmp_path, model, segmentation_spec(output="classmap"))
    assert "[N, 8, 12]" in msg and "input size 64x96" in msg and "upsample" in fix


def test_logits_that_do_not_divide_the_input_are_refused(tmp_path):
    # exported at 64x96, stride 8 = 8x12; a spec of 60x90 gives 8x12 from the fixed dims
    model = square_segmenter_model(64, 96)
    for d in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        d.dim_param = "hw"
    for d in model.graph.output[0].type.tensor_type.shape.dim[2:]:
        d.dim_param = "out_hw"
    msg, fix = _refused(tmp_path, model, segmentation_spec(size=(60, 90)))
    assert "does not divide the input size 60x90" in msg and "stride" in fix


def test_a_fixed_input_size_other_than_the_specs_is_a_spec_error(tmp_path):
    msg, fix = _refused(
        tmp_path, square_segmenter_model(64, 96), segmentation_spec(size=(32, 48)), SpecError
    )
    assert "input_size" in msg


def test_two_inputs_and_a_batch_mismatch_are_refused(tmp_path):
    model = square_segmenter_model(64, 96)
    model.graph.input.append(
        helper.make_tensor_value_info("extra", TensorProto.FLOAT, ["N", 3, 64, 96])
    )
    msg, _ = _refused(tmp_path, model, segmentation_spec())
    assert "2 inputs" in msg
    model = square_segmenter_model(64, 96)
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 4
    msg, fix = _refused(tmp_path, model, segmentation_spec())
    assert "batch" in msg and "dynamic_axes" in fix


def test_a_classification_spec_is_refused(tmp_path):
    path = save(square_segmenter_model(64, 96), tmp_path / "m.onnx")
    with pytest.raises(SpecError, match="not a segmentation one"):
        check_segmenter_onnx(path, ModelSpec(labels=("a", "b"), input_size=(64, 96)))


def test_the_head_walk_is_the_classifier_and_what_follows(tmp_path):
    assert head_float_nodes(square_segmenter_model(64, 96), ("logits",)) == ("classifier",)
    head = head_float_nodes(square_segmenter_model(64, 96, output="classmap"), ("classes",))
    assert head == ("classifier", "upsample", "argmax", "to_uint8")
