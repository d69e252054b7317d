"""A user's detector ONNX against the detection contract; the head kept in float."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevision.errors import BuildError, SpecError
from edgevision.spec import ModelSpec
from edgevision.tasks.detect.onnx_contract import (
    DetectorIO,
    check_detector_onnx,
    describe_head,
    head_float_nodes,
)

LABELS = ("car", "person", "dog")
C = len(LABELS)
H = W = 8
K = H * W  # one candidate per point of the 1x1-conv head


def _spec(labels=LABELS, candidates=K, size=(H, W), **kw) -> ModelSpec:
    return ModelSpec(
        task="detection",
        labels=labels,
        input_size=size,
        detection={"candidates": candidates},
        **kw,
    )


def _init(name: str, shape, seed: int = 0) -> TensorProto:
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array(rng.normal(0, 0.1, shape).astype(np.float32), name)


def _head_graph(
    *,
    classes: int = C,
    opset: int = 17,
    input_shape=("batch", 3, H, W),
    boxes_shape=("batch", K, 4),
    scores_shape=None,
    output_names=("boxes", "scores"),
    extra_input: bool = False,
) -> onnx.ModelProto:
    """input → Conv(1x1) → [Reshape, Transpose] → boxes; Conv(1x1) → Sigmoid → ... → scores.

    The declared output shapes can be set to what an off-contract export would declare.
    """
    scores_shape = scores_shape or ("batch", K, classes)
    nodes = [
        helper.make_node("Conv", ["input", "w_box", "b_box"], ["box_map"], name="box_conv"),
        helper.make_node("Reshape", ["box_map", "flat4"], ["box_flat"], name="box_reshape"),
        helper.make_node("Transpose", ["box_flat"], ["boxes"], name="box_t", perm=[0, 2, 1]),
        helper.make_node("Conv", ["input", "w_cls", "b_cls"], ["cls_map"], name="cls_conv"),
        helper.make_node("Sigmoid", ["cls_map"], ["cls_prob"], name="cls_sigmoid"),
        helper.make_node("Reshape", ["cls_prob", "flatc"], ["cls_flat"], name="cls_reshape"),
        helper.make_node("Transpose", ["cls_flat"], ["scores"], name="cls_t", perm=[0, 2, 1]),
    ]
    inits = [
        _init("w_box", (4, 3, 1, 1)),
        _init("b_box", (4,), 1),
        _init("w_cls", (classes, 3, 1, 1), 2),
        _init("b_cls", (classes,), 3),
        numpy_helper.from_array(np.array([0, 4, -1], np.int64), "flat4"),
        numpy_helper.from_array(np.array([0, classes, -1], np.int64), "flatc"),
    ]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape))]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("im_size", TensorProto.FLOAT, [1, 2]))
    declared = {"boxes": boxes_shape, "scores": scores_shape}
    outputs = []
    for tensor, name in zip(("boxes", "scores"), output_names, strict=False):
        if name != tensor:
            nodes.append(helper.make_node("Identity", [tensor], [name], name=f"rename_{name}"))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, declared[tensor]))
    graph = helper.make_graph(nodes, "det", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _save(tmp_path, model: onnx.ModelProto, name: str = "det.onnx"):
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _refusal(tmp_path, model, spec=None) -> BuildError:
    with pytest.raises(BuildError) as info:
        check_detector_onnx(_save(tmp_path, model), spec or _spec())
    assert info.value.fix, "every refusal says how to fix it"
    return info.value


# --- check_detector_onnx ---------------------------------------------------------------------


def test_the_hand_graph_is_a_valid_onnx_model():
    onnx.checker.check_model(_head_graph(), full_check=True)  # the shapes it declares are real


def test_a_contract_detector_passes(tmp_path):
    io = check_detector_onnx(_save(tmp_path, _head_graph()), _spec())
    assert io == DetectorIO((None, 3, H, W), K, C, "input", [])
    with pytest.raises(AttributeError):  # frozen
        io.candidates = 1  # type: ignore[misc]


def test_a_candidate_count_other_than_the_spec_passes_with_a_note(tmp_path):
    io = check_detector_onnx(_save(tmp_path, _head_graph()), _spec(candidates=100))
    assert io.candidates == K
    assert len(io.notes) == 1 and f"K={K}" in io.notes[0] and "100" in io.notes[0]


def test_dynamic_height_and_width_pass_with_a_note(tmp_path):
    model = _head_graph(input_shape=("batch", 3, "height", "width"))
    io = check_detector_onnx(_save(tmp_path, model), _spec())
    assert io.input_shape == (None, 3, None, None)
    assert any("dynamic dims" in n for n in io.notes)


def test_a_fixed_input_size_other_than_the_spec_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="input_size"):
        check_detector_onnx(_save(tmp_path, _head_graph()), _spec(size=(16, 16)))


def test_wrong_output_names_are_listed_with_the_renaming(tmp_path):
    err = _refusal(tmp_path, _head_graph(output_names=("bbox", "cls")))
    assert "2 outputs" in err.message and "'bbox'" in err.message and "'cls'" in err.message
    assert "'bbox' → 'boxes'" in err.fix and "'cls' → 'scores'" in err.fix


def test_a_single_yolo_style_output_gets_the_split_hint(tmp_path):
    model = _head_graph()
    cat = helper.make_node("Concat", ["boxes", "scores"], ["output0"], name="cat", axis=2)
    model.graph.node.append(cat)
    del model.graph.output[:]
    model.graph.output.append(
        helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", K, 4 + C])
    )
    onnx.checker.check_model(model, full_check=True)
    err = _refusal(tmp_path, model)
    assert "1 output" in err.message and "'output0'" in err.message
    assert "YOLO" in err.message and f"4 + C for the spec's C={C}" in err.message
    assert "split" in err.fix and "sigmoid" in err.fix and "wrapper" in err.fix


def test_one_plain_output_is_refused_without_the_yolo_hint(tmp_path):
    model = _head_graph()
    del model.graph.output[1:]
    err = _refusal(tmp_path, model)
    assert "1 output" in err.message and "'boxes'" in err.message and "YOLO" not in err.message


def test_extra_outputs_and_nms_style_outputs_are_refused(tmp_path):
    model = _head_graph()
    model.graph.output.append(
        helper.make_tensor_value_info("cls_map", TensorProto.FLOAT, ["batch", C, H, W])
    )
    err = _refusal(tmp_path, model)
    assert "3 outputs" in err.message and "'cls_map'" in err.message
    assert "export only 'boxes' and 'scores'" in err.fix
    nms = _head_graph(output_names=("det_boxes", "det_scores"))
    nms.graph.output.append(helper.make_tensor_value_info("num_dets", TensorProto.INT64, [1]))
    err = _refusal(tmp_path, nms)
    assert "'num_dets'" in err.message and "NMS" in err.fix


def test_scores_of_another_class_count_than_the_labels_are_refused(tmp_path):
    err = _refusal(tmp_path, _head_graph(), _spec(labels=("car", "person")))
    assert "'scores'" in err.message and "3 classes" in err.message and "2 labels" in err.message


def test_boxes_not_four_wide_are_refused(tmp_path):
    err = _refusal(tmp_path, _head_graph(boxes_shape=("batch", K, 5)))
    assert "'boxes'" in err.message and "last dim must be 4" in err.message


def _nms_graph() -> onnx.ModelProto:
    """The contract head, then a score filter (NonZero): K depends on the image, as with NMS."""
    model = _head_graph()
    for node in model.graph.node:
        node.output[:] = [f"{x}_all" if x in ("boxes", "scores") else x for x in node.output]
    model.graph.node.extend(
        [
            helper.make_node(
                "ReduceMax", ["scores_all"], ["best"], name="best", axes=[0, 2], keepdims=0
            ),
            helper.make_node("Greater", ["best", "thr"], ["keep"], name="keep"),
            helper.make_node("NonZero", ["keep"], ["where"], name="nonzero"),
            helper.make_node("Squeeze", ["where", "zero"], ["index"], name="squeeze"),
            helper.make_node("Gather", ["boxes_all", "index"], ["boxes"], name="gb", axis=1),
            helper.make_node("Gather", ["scores_all", "index"], ["scores"], name="gs", axis=1),
        ]
    )
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(0.5, np.float32), "thr"),
            numpy_helper.from_array(np.array([0], np.int64), "zero"),
        ]
    )
    for out, last in zip(model.graph.output, (4, C), strict=True):
        out.CopyFrom(
            helper.make_tensor_value_info(out.name, TensorProto.FLOAT, ["batch", "num_dets", last])
        )
    return model


def test_a_data_dependent_candidate_count_is_refused(tmp_path):
    model = _nms_graph()
    onnx.checker.check_model(model, full_check=True)
    err = _refusal(tmp_path, model)
    assert "num_dets" in err.message and "dynamic" in err.message and "NonZero" in err.message
    assert "fixed integer" in err.fix and "top-K" in err.fix and "before NMS" in err.fix


def test_a_symbolic_but_computable_candidate_count_is_worked_out(tmp_path):
    # torch's exporter declares K after TopK + GatherElements as a symbol; the graph fixes it
    model = _head_graph(boxes_shape=("batch", "dim_1", 4), scores_shape=("batch", "k", "c"))
    io = check_detector_onnx(_save(tmp_path, model), _spec())
    assert (io.candidates, io.classes) == (K, C)
    # a dynamic-size input: K at the spec's size, the size the build fixes the input to
    model = _head_graph(
        input_shape=("batch", 3, "h", "w"),
        boxes_shape=("batch", "k", 4),
        scores_shape=("batch", "k", C),
    )
    assert check_detector_onnx(_save(tmp_path, model), _spec(size=(8, 16))).candidates == 128


def test_outputs_disagreeing_on_k_are_refused(tmp_path):
    err = _refusal(tmp_path, _head_graph(scores_shape=("batch", K - 1, C)))
    assert "disagree on K" in err.message


def test_a_wrong_rank_is_refused(tmp_path):
    err = _refusal(tmp_path, _head_graph(boxes_shape=("batch", K * 4)))
    assert "'boxes'" in err.message and "rank 2" in err.message
    err = _refusal(tmp_path, _head_graph(scores_shape=("batch", 1, K, C)))
    assert "'scores'" in err.message and "rank 4" in err.message


def test_an_input_that_is_not_one_image_is_refused(tmp_path):
    err = _refusal(tmp_path, _head_graph(extra_input=True))
    assert "2 inputs" in err.message and "'im_size'" in err.message
    err = _refusal(tmp_path, _head_graph(input_shape=("batch", 3, H * W)))
    assert "input 'input'" in err.message and "[batch, 3, H, W]" in err.message
    err = _refusal(tmp_path, _head_graph(input_shape=("batch", 1, H, W)))  # one channel
    assert "[batch, 3, H, W]" in err.message
    err = _refusal(tmp_path, _head_graph(), _spec(layout="NHWC"))  # NCHW model, NHWC spec
    assert "NHWC" in err.message and "[batch, H, W, 3]" in err.message


def test_inconsistent_batch_dims_are_refused(tmp_path):
    model = _head_graph(boxes_shape=(1, K, 4), scores_shape=(1, K, C))  # the input is dynamic
    err = _refusal(tmp_path, model)
    assert "batch" in err.message and "'boxes'" in err.message
    model = _head_graph(input_shape=(2, 3, H, W), boxes_shape=(2, K, 4), scores_shape=(1, K, C))
    err = _refusal(tmp_path, model)
    assert "'scores' has batch 1" in err.message
    model = _head_graph(input_shape=(1, 3, H, W), boxes_shape=(1, K, 4), scores_shape=(1, K, C))
    assert check_detector_onnx(_save(tmp_path, model), _spec()).input_shape == (1, 3, H, W)


def test_opset_12_is_refused(tmp_path):
    err = _refusal(tmp_path, _head_graph(opset=12))
    assert "opset 12" in err.message and "opset 17" in err.fix
    assert check_detector_onnx(_save(tmp_path, _head_graph(opset=13)), _spec()).candidates == K


def test_an_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(BuildError, match="empty"):
        check_detector_onnx(path, _spec())
    with pytest.raises(BuildError, match="does not exist"):
        check_detector_onnx(tmp_path / "missing.onnx", _spec())


def test_garbage_bytes_are_refused(tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    with pytest.raises(BuildError, match="not a readable ONNX model"):
        check_detector_onnx(path, _spec())


def test_undeclared_output_shapes_are_inferred(tmp_path):
    model = _head_graph()
    for out in model.graph.output:
        out.type.tensor_type.ClearField("shape")
    io = check_detector_onnx(_save(tmp_path, model), _spec())
    assert (io.candidates, io.classes) == (K, C)


def test_the_module_is_torch_free():
    code = (
        "import sys, edgevision.tasks.detect.onnx_contract; "
        "assert 'torch' not in sys.modules and 'onnx' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- head_float_nodes ------------------------------------------------------------------------


def _model(nodes, inits, outputs=("out",), inputs=("x",), out_shape=None) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(i, TensorProto.FLOAT, [1, 3, 4, 4]) for i in inputs],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, out_shape) for o in outputs],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _chain() -> onnx.ModelProto:
    return _model(
        [
            helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1"),
            helper.make_node("Relu", ["a"], ["b"], name="relu"),
            helper.make_node("Conv", ["b", "w2"], ["c"], name="conv2"),
            helper.make_node("Sigmoid", ["c"], ["out"], name="sigmoid"),
        ],
        [_init("w1", (3, 3, 1, 1)), _init("w2", (3, 3, 1, 1))],
    )


def test_the_walk_stops_at_the_last_weighted_layer():
    model = _chain()
    names = head_float_nodes(model, ["out"])
    assert names == ("conv2", "sigmoid")
    assert describe_head(model, names) == {
        "final_layers": ["conv2"],
        "after": 1,
        "op_types": {"Conv": 1, "Sigmoid": 1},
    }


def test_a_constant_node_weight_and_a_transposed_weight_are_weighted():
    model = _model(
        [
            helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1"),
            helper.make_node(
                "Constant", [], ["w2"], name="w2_const", value=_init("w2v", (3, 3, 1, 1))
            ),
            helper.make_node("Conv", ["a", "w2"], ["b"], name="conv2"),
            helper.make_node("Transpose", ["m"], ["mt"], name="m_t", perm=[1, 0]),
            helper.make_node("MatMul", ["b", "mt"], ["out"], name="matmul"),
        ],
        [_init("w1", (3, 3, 1, 1)), _init("m", (4, 4))],
    )
    assert head_float_nodes(model, ["out"]) == ("matmul",)


def test_a_conv_with_a_computed_weight_is_walked_through():
    model = _model(
        [
            helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1"),
            helper.make_node("Conv", ["a", "x"], ["out"], name="dynamic_conv"),  # weight = data
        ],
        [_init("w1", (3, 3, 1, 1))],
    )
    assert head_float_nodes(model, ["out"]) == ("conv1", "dynamic_conv")


def test_shared_subexpressions_are_walked_once():
    depth = 40  # without a visited set a walk would go 2**40 ways
    nodes = [helper.make_node("Conv", ["x", "w"], ["t0"], name="conv")]
    for i in range(depth):
        nodes += [
            helper.make_node("Sigmoid", [f"t{i}"], [f"s{i}"], name=f"sig{i}"),
            helper.make_node("Tanh", [f"t{i}"], [f"h{i}"], name=f"tanh{i}"),
            helper.make_node("Add", [f"s{i}", f"h{i}"], [f"t{i + 1}"], name=f"add{i}"),
        ]
    nodes.append(helper.make_node("Identity", [f"t{depth}"], ["out"], name="id"))
    model = _model(nodes, [_init("w", (3, 3, 1, 1))])
    names = head_float_nodes(model, ["out", "out"])
    assert names == tuple(n.name for n in nodes)  # every node once, in graph order
    assert describe_head(model, names)["op_types"] == {
        "Add": depth,
        "Conv": 1,
        "Identity": 1,
        "Sigmoid": depth,
        "Tanh": depth,
    }


def test_an_output_made_without_weighted_layers_gives_its_nodes():
    model = _model(
        [
            helper.make_node("Relu", ["x"], ["a"], name="relu"),
            helper.make_node("Sigmoid", ["a"], ["out"], name="sigmoid"),
            helper.make_node("Conv", ["x", "w"], ["unused"], name="side_conv"),
        ],
        [_init("w", (3, 3, 1, 1))],
    )
    names = head_float_nodes(model, ["out"])
    assert names == ("relu", "sigmoid")
    assert describe_head(model, names) == {
        "final_layers": [],
        "after": 2,
        "op_types": {"Relu": 1, "Sigmoid": 1},
    }


def test_what_an_if_branch_reads_from_outside_is_walked():
    def branch(name: str) -> onnx.GraphProto:
        out = helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [1, 3, 4, 4])
        node = helper.make_node("Identity", ["b"], [f"{name}_out"], name=f"{name}_id")
        return helper.make_graph([node], name, [], [out])

    model = _model(
        [
            helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1"),
            helper.make_node("Sigmoid", ["a"], ["b"], name="sigmoid"),
            helper.make_node(
                "If",
                ["cond"],
                ["out"],
                name="if",
                then_branch=branch("then"),
                else_branch=branch("else"),
            ),
        ],
        [_init("w1", (3, 3, 1, 1)), numpy_helper.from_array(np.array(True), "cond")],
        out_shape=[1, 3, 4, 4],
    )
    onnx.checker.check_model(model)
    assert head_float_nodes(model, ["out"]) == ("conv1", "sigmoid", "if")


def test_the_contract_graph_keeps_its_whole_head():
    names = head_float_nodes(_head_graph())  # default outputs: boxes, scores
    assert set(names) == {
        "box_conv",
        "box_reshape",
        "box_t",
        "cls_conv",
        "cls_sigmoid",
        "cls_reshape",
        "cls_t",
    }


def test_unnamed_or_unknown_nodes_are_errors():
    model = _chain()
    model.graph.node[3].name = ""
    with pytest.raises(ValueError, match="no name"):
        head_float_nodes(model, ["out"])
    model = _chain()
    model.graph.node[0].name = "sigmoid"  # the kept node's name is also another node's
    with pytest.raises(ValueError, match="more than once"):
        head_float_nodes(model, ["out"])
    with pytest.raises(ValueError, match="not in the graph"):
        head_float_nodes(_chain(), ["boxes"])
    model = _chain()
    model.graph.node[0].name = ""  # an unnamed node the walk never reaches is fine
    assert head_float_nodes(model, ["out"]) == ("conv2", "sigmoid")


# --- the in-house detector -------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported_detector(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from edgevision.tasks.detect.model import DetectorExport, create_detector

    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")  # weights=None: random init, nothing to download
    try:
        torch.manual_seed(0)
        det = create_detector("efficientnet_lite0", C, (96, 128), weights=None).eval()
    finally:
        mp.undo()
    path = tmp_path_factory.mktemp("det") / "detector.onnx"
    with torch.no_grad():
        torch.onnx.export(
            DetectorExport(det, 50),
            torch.zeros(1, 3, 96, 128),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["boxes", "scores"],
            dynamic_axes={"input": {0: "batch"}, "boxes": {0: "batch"}, "scores": {0: "batch"}},
        )
    head = {
        name: getattr(det.head, name).weight.detach().numpy().copy()
        for name in ("cls", "box", "quality")
    }
    return path, head


@pytest.mark.slow
def test_the_in_house_detector_meets_the_contract(exported_detector):
    path, _ = exported_detector
    spec = _spec(candidates=50, size=(96, 128))
    io = check_detector_onnx(path, spec)
    assert (io.candidates, io.classes, io.input_name) == (50, C, "input")
    assert io.input_shape == (None, 3, 96, 128) and io.notes == []


@pytest.mark.slow
def test_the_in_house_head_is_its_final_convolutions_and_after(exported_detector):
    path, head = exported_detector
    model = onnx.load(str(path))
    for i, node in enumerate(model.graph.node):  # the build names nodes; torch already does
        node.name = node.name or f"{node.op_type}_{i}"
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}

    def head_conv(node) -> str | None:
        w = inits.get(node.input[1])
        return next((k for k, v in head.items() if w is not None and np.array_equal(w, v)), None)

    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    final = {n.name: head_conv(n) for n in convs if head_conv(n)}
    assert sorted(final.values()) == ["box"] * 3 + ["cls"] * 3 + ["quality"] * 3  # 3 levels
    out_channels = {k: v.shape[0] for k, v in head.items()}
    assert out_channels == {"cls": C, "box": 4, "quality": 1}

    names = head_float_nodes(model)
    summary = describe_head(model, names)
    assert set(summary["final_layers"]) == set(final)  # exactly the final convs, none other
    assert summary["op_types"]["Conv"] == 9
    assert len(convs) > 9  # the backbone, neck and towers are there, and left out
    kept = set(names)
    assert not [n.name for n in convs if n.name in kept and n.name not in final]
    for op in ("Sigmoid", "Sqrt", "TopK", "GatherElements", "Softplus"):
        assert op in summary["op_types"], op
    assert summary["after"] == len(names) - 9
