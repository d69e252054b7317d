"""Which layers INT8 hurts: per-layer SQNR between FP32 and INT8, then the accuracy effect of
keeping each of the worst layers in float.

SQNR comes from ONNX Runtime's quantization debugger (``onnxruntime.quantization.
qdq_loss_debug``): both models are augmented to output every float tensor
(``modify_model_output_intermediate_tensors``), run on calibration images
(``collect_activations``) and paired by name (``create_activation_matching``); weights are
paired with ``create_weight_matching`` and scored with ``compute_weight_error``. Activations are
scored two ways:

* **local** — the FP32 activation quantized alone with the INT8 model's own scale and zero point
  (exactly what its QuantizeLinear/DequantizeLinear pair does). This isolates the layer: errors
  from earlier layers are not counted again. Both ORT's tensor-wide SQNR and a per-channel one
  are kept; the per-channel one ranks, because a tensor-wide SQNR hides the classic failure
  (one outlier channel stretches the range and the small channels round to zero, while the
  outlier's energy keeps the tensor-wide ratio high).
* **cumulative** — FP32 model vs INT8 model at that tensor (ORT's ``xmodel_err``), where the
  error of everything upstream has piled up: it shows where the divergence starts.

A "layer" in Q/DQ terms is the node that produces a quantized tensor. Keeping it in float means
excluding it, the activations ORT folded into its range (Relu/Clip), and every node that reads
its quantized output — otherwise ORT still puts a Q/DQ pair on that tensor for the readers.
``float_nodes`` is that set, ready for ``quantize_for_target(nodes_to_exclude=...)``.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevision.compile.calibrate import quantizable_op_types
from edgevision.compile.context import Job
from edgevision.compile.graph import GraphIndex
from edgevision.compile.progress import Tracker, silent
from edgevision.compile.quantize import TARGETS
from edgevision.errors import BuildError
from edgevision.fileio import atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

FILES = {"json": "sensitivity.json", "markdown": "sensitivity.md", "plot": "sensitivity.png"}
_EPS = float(np.finfo(float).eps)  # ORT's guard in compute_signal_to_quantization_noice_ratio
_MAX_DB = round(-20 * math.log10(_EPS), 1)
_QDQ = ("QuantizeLinear", "DequantizeLinear")
_Q_INPUT_SUFFIX = "_QuantizeLinear_Input"  # ORT's name for a graph output's pre-Q tensor


@dataclass
class LayerSensitivity:
    """One layer: how much INT8 distorts it, and what keeping it in float does to top-1."""

    layer: str
    op_type: str
    tensor: str | None  # its quantized output activation (None: only its weights are INT8)
    sqnr_db: float  # ranking key: the worse of the per-channel activation and weight SQNR
    channel_sqnr_db: float | None = None  # local, mean per-channel noise of the output
    activation_sqnr_db: float | None = None  # local, tensor-wide (ORT's formula)
    weight_sqnr_db: float | None = None
    output_sqnr_db: float | None = None  # cumulative: FP32 model vs INT8 model here
    float_nodes: tuple[str, ...] = ()  # nodes to exclude to keep this layer in float
    drop: float | None = None  # top-1 points lost vs FP32 with float_nodes in float
    recovered: float | None = None  # points won back against plain INT8

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["float_nodes"] = list(self.float_nodes)
        return {k: round(v, 3) + 0.0 if isinstance(v, float) else v for k, v in d.items()}


@dataclass
class SensitivityTable:
    """Every quantized layer of one target's INT8 model, worst SQNR first."""

    target: str
    images: int  # calibration images the SQNR was measured on
    rows: list[LayerSensitivity]
    plain_drop: float | None = None  # plain INT8's top-1 drop on the evaluation set
    fp32_top1: float | None = None
    eval_images: int | None = None
    nodes_to_exclude: tuple[str, ...] = ()  # already in float for every row (the user's)
    notes: list[str] = field(default_factory=list)
    metric: str = "top-1"  # what the drops are points of (mAP@[.5:.95] for a detector)

    def row(self, layer: str) -> LayerSensitivity:
        """The row of ``layer``; an unknown name lists a few known ones."""
        for r in self.rows:
            if r.layer == layer:
                return r
        raise BuildError(
            f"no quantized layer {layer!r} in the sensitivity table",
            f"use one of: {', '.join(r.layer for r in self.rows[:5])}",
        )

    def candidates(self) -> list[LayerSensitivity]:
        """Rows to try in float, best first: measured ones by the drop they leave, then SQNR."""
        usable = [r for r in self.rows if r.float_nodes]
        measured = sorted(
            (r for r in usable if r.drop is not None), key=lambda r: (r.drop, r.sqnr_db)
        )
        return measured + [r for r in usable if r.drop is None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "calibration_images": self.images,
            "eval_images": self.eval_images,
            "metric": self.metric,
            "fp32_top1": self.fp32_top1,
            "plain_drop": self.plain_drop,
            "nodes_to_exclude": list(self.nodes_to_exclude),
            "notes": self.notes,
            "layers": [r.to_dict() for r in self.rows],
        }

    def markdown(self, limit: int = 40) -> str:
        """The table as markdown, worst ``limit`` layers."""
        lines = [
            f"# Quantization sensitivity ({self.target} INT8)",
            "",
            f"SQNR on {self.images} calibration images (dB, higher is better; local = this "
            "layer's own Q/DQ, cumulative = FP32 vs INT8 model at its output).",
        ]
        if self.plain_drop is not None:
            lines.append(
                f"Plain INT8 loses {self.plain_drop:.2f} {self.metric} points (FP32 "
                f"{self.fp32_top1:.2f} "
                f"on {self.eval_images} images); 'drop in float' is the loss with that layer's "
                "nodes kept in float."
            )
        lines += [
            "",
            "| layer | op | SQNR | per-channel | tensor-wide | weight | cumulative "
            "| drop in float | recovered | float nodes |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in self.rows[:limit]:
            cells = [
                r.sqnr_db,
                r.channel_sqnr_db,
                r.activation_sqnr_db,
                r.weight_sqnr_db,
                r.output_sqnr_db,
                r.drop,
                r.recovered,
            ]
            text = " | ".join("—" if c is None else f"{c:.2f}" for c in cells)
            lines.append(f"| `{r.layer}` | {r.op_type} | {text} | {len(r.float_nodes)} |")
        if len(self.rows) > limit:
            lines.append(f"\n{len(self.rows) - limit} more layers in {FILES['json']}.")
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def write(self, folder: str | os.PathLike[str]) -> dict[str, Path]:
        """sensitivity.json, sensitivity.md and sensitivity.png in ``folder``."""
        folder = Path(folder)
        return {
            FILES["json"]: atomic_write_json(folder / FILES["json"], self.to_dict()),
            FILES["markdown"]: atomic_write_text(folder / FILES["markdown"], self.markdown()),
            FILES["plot"]: plot_sensitivity(self, folder / FILES["plot"]),
        }


def analyze_sensitivity(
    job: Job,
    target: str = "cpu",
    *,
    top_k: int = 8,
    sqnr_images: int = 32,
    plain: str | os.PathLike[str] | None = None,
) -> SensitivityTable:
    """Rank the layers of ``job.prep`` (the pre-processed FP32 model that was calibrated) by
    how much ``target``'s INT8 distorts them, and measure the top-1 effect of keeping each of
    the ``top_k`` worst in float (needs the job's evaluation set or evaluator; ``top_k=0``
    skips it). The job's ``nodes_to_exclude`` stay in float throughout.

    Drops are measured against ``job.fp32``; ``plain`` is an existing INT8 model of
    ``job.prep`` for ``target`` (quantized here if None). Nothing is written outside
    ``job.work`` (a temporary folder when it is None).
    """
    if job.work is not None:
        job.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ev-sens-", dir=job.work) as tmp:
        work = Path(tmp)
        # The SQNR pass pairs each Q/DQ tensor with its FP32 twin, so it reads the INT8 model
        # before the target's (exact, shape-changing) kernel rewrites.
        if plain is None or TARGETS.get(target).finalize is not None:
            bare = job.quantize(target, work / "bare.onnx", job.nodes_to_exclude, finalize=False)
        else:
            bare = Path(plain)
        plain = plain or bare  # same outputs: the rewrites are exact
        images = job.calib.tensors[:sqnr_images]
        rows = layer_sqnr(job.prep, bare, images, job.threads, job.batch_size, job.track)
        table = SensitivityTable(target, len(images), rows, nodes_to_exclude=job.nodes_to_exclude)
        if job.can_evaluate and top_k > 0:
            _measure_effects(job, table, Path(plain), top_k, work)
        elif top_k > 0:
            table.notes.append("no labelled evaluation set: accuracy effect not measured")
    return table


# -- SQNR ----------------------------------------------------------------------------------
@dataclass
class _Quantized:
    """A quantized activation of the INT8 model: its Q parameters, producer and readers."""

    tensor: str
    scale: np.ndarray
    zero_point: np.ndarray
    layer: Any  # the QDQ model's node producing it (None: a graph input)
    readers: list[Any]


def _quantized_activations(qdq: GraphIndex) -> dict[str, _Quantized]:
    """Activation tensors that get a Q/DQ pair in the INT8 model, by their FP32 name."""
    found = {}
    for node in qdq.model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in qdq.consts:
            continue
        raw = node.input[0]
        name = raw[: -len(_Q_INPUT_SUFFIX)] if raw.endswith(_Q_INPUT_SUFFIX) else raw
        readers = [r for r, _ in qdq.dequantized_readers(node) if r.op_type not in _QDQ]
        zero = qdq.const(node, 2)
        if zero is None:
            zero = np.zeros((), np.uint8)  # ONNX's default zero point type
        found[name] = _Quantized(
            name, qdq.consts[node.input[1]], zero, qdq.producer.get(raw), readers
        )
    return found


def _float_nodes(
    q: _Quantized, qdq: GraphIndex, prep: GraphIndex, ops: set[str]
) -> tuple[str, ...]:
    """Nodes to exclude so that ``q.tensor`` stays float: its producer, the activations ORT
    folded into it (absent from the INT8 model), and its quantizing readers."""
    folded, _ = prep.folded_chain(q.tensor, qdq.order)
    nodes = {q.layer.name, *(n.name for n in folded)}
    nodes.update(r.name for r in q.readers if r.op_type in ops)
    if "" in nodes:
        return ()  # an unnamed node cannot be excluded
    return tuple(sorted(nodes, key=lambda n: prep.order.get(n, 1 << 30)))


def _fake_quant(x: np.ndarray, q: _Quantized) -> np.ndarray:
    """What the Q/DQ pair does to ``x`` (ONNX QuantizeLinear rounds half to even)."""
    info = np.iinfo(q.zero_point.dtype)
    zp = q.zero_point.astype(np.float32)
    levels = np.clip(np.rint(x / q.scale) + zp, info.min, info.max)
    return ((levels - zp) * q.scale).astype(np.float32)


class _Energy:
    """Signal and noise energy of one tensor per channel, summed over batches."""

    def __init__(self) -> None:
        self.signal: np.ndarray | None = None
        self.noise: np.ndarray | None = None

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        """``x`` the FP32 values, ``y`` the quantized ones, both (batch, channels, rest)."""
        x64 = x.astype(np.float64)
        d = x64 - y
        s, n = np.sum(x64 * x64, axis=(0, 2)), np.sum(d * d, axis=(0, 2))
        self.signal = s if self.signal is None else self.signal + s
        self.noise = n if self.noise is None else self.noise + n

    def sqnr(self) -> float | None:
        if self.signal is None or self.noise is None:
            return None
        return _db(float(self.signal.sum()), float(self.noise.sum()))

    def channel_sqnr(self) -> float | None:
        """-10·log10 of the mean per-channel noise/signal ratio (each capped at 1: a channel
        rounded to zero has lost everything, and no more)."""
        if self.signal is None or self.noise is None:
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(self.signal > 0, self.noise / self.signal, self.noise > 0)
        mean = float(np.mean(np.minimum(ratio, 1.0)))
        return round(-10 * math.log10(max(mean, _EPS * _EPS)), 3)


def _db(signal: float, noise: float) -> float:
    """ORT's compute_signal_to_quantization_noice_ratio, from energies summed over batches;
    no noise at all is the best score (ORT's formula gives 0 dB for an exact all-zero tensor)."""
    if noise == 0:
        return _MAX_DB
    ratio = max(math.sqrt(signal), _EPS) / max(math.sqrt(noise), _EPS)
    return round(20 * math.log10(ratio), 3)


def layer_sqnr(
    fp32_path: str | os.PathLike[str],
    qdq_path: str | os.PathLike[str],
    images: np.ndarray,
    threads: int = 0,
    batch_size: int = 16,
    track: Tracker = silent,
) -> list[LayerSensitivity]:
    """SQNR of every quantized layer of ``qdq_path`` against ``fp32_path`` (the FP32 model it
    was quantized from) on preprocessed ``images``, worst first. ``drop`` is left None."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_weight_error,
        create_activation_matching,
        create_weight_matching,
        modify_model_output_intermediate_tensors,
    )

    if len(images) == 0:
        raise BuildError("no calibration images to measure SQNR on", "give a calibration set")
    prep, qdq = GraphIndex(onnx.load(str(fp32_path))), GraphIndex(onnx.load(str(qdq_path)))
    acts = _quantized_activations(qdq)
    channels = _channel_counts(prep.model)
    local = {name: _Energy() for name in acts}
    cumulative = {name: _Energy() for name in acts}
    batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    with tempfile.TemporaryDirectory(prefix="ev-sqnr-") as tmp:
        float_aug, qdq_aug = str(Path(tmp) / "fp32.onnx"), str(Path(tmp) / "int8.onnx")
        modify_model_output_intermediate_tensors(str(fp32_path), float_aug)
        modify_model_output_intermediate_tensors(str(qdq_path), qdq_aug)
        options = _debug_session_options(threads)
        feed_name = _input_name(prep.model)
        for batch in track(batches, len(batches), "sensitivity: SQNR"):
            # collect_activations iterates its reader; a list of feeds is one.
            feeds = [{feed_name: np.ascontiguousarray(batch)}]
            matched = create_activation_matching(
                collect_activations(qdq_aug, feeds, options),
                collect_activations(float_aug, feeds, options),
            )
            for name, q in acts.items():
                m = matched.get(name)
                if not m or not m.get("float"):
                    continue
                x = _shaped(m["float"][0], len(batch), channels.get(name))
                local[name].add(x, _fake_quant(x, q))
                cumulative[name].add(x, _shaped(m["post_qdq"][0], len(batch), channels.get(name)))
    matched_weights = create_weight_matching(str(fp32_path), str(qdq_path))
    weights = compute_weight_error(matched_weights)
    for name, pair in matched_weights.items():
        if np.array_equal(pair["float"], pair["dequantized"]):
            weights[name] = _MAX_DB  # exact (e.g. a zero bias): ORT's formula says 0 dB
    return _rows(acts, local, cumulative, weights, prep, qdq)


def _rows(
    acts: dict[str, _Quantized],
    local: dict[str, _Energy],
    cumulative: dict[str, _Energy],
    weights: dict[str, float],
    prep: GraphIndex,
    qdq: GraphIndex,
) -> list[LayerSensitivity]:
    ops = set(quantizable_op_types())
    rows: dict[str, LayerSensitivity] = {}
    for name, q in acts.items():
        if q.layer is None or q.layer.op_type in _QDQ:
            continue  # a graph input, or a re-quantization
        row = LayerSensitivity(
            q.layer.name,
            q.layer.op_type,
            name,
            _MAX_DB,
            channel_sqnr_db=local[name].channel_sqnr(),
            activation_sqnr_db=local[name].sqnr(),
            output_sqnr_db=cumulative[name].sqnr(),
            float_nodes=_float_nodes(q, qdq, prep, ops),
        )
        old = rows.get(row.layer)
        if old is None or _worse(row, old):
            rows[row.layer] = row
    for weight, db in weights.items():
        layer = next((n for n in prep.readers(weight) if n.name in qdq.order), None)
        if layer is None:
            continue
        row = rows.setdefault(
            layer.name,
            LayerSensitivity(layer.name, layer.op_type, None, _MAX_DB, float_nodes=(layer.name,)),
        )
        row.weight_sqnr_db = _min(row.weight_sqnr_db, round(db, 3))
    for row in rows.values():
        act = row.channel_sqnr_db if row.channel_sqnr_db is not None else row.activation_sqnr_db
        row.sqnr_db = min(v for v in (act, row.weight_sqnr_db, _MAX_DB) if v is not None)
    return sorted(rows.values(), key=lambda r: (r.sqnr_db, prep.order.get(r.layer, 0)))


def _worse(a: LayerSensitivity, b: LayerSensitivity) -> bool:
    return (a.channel_sqnr_db or _MAX_DB) < (b.channel_sqnr_db or _MAX_DB)


def _min(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


def _shaped(flat: np.ndarray, batch: int, channels: int | None) -> np.ndarray:
    """(batch, channels, rest) from ORT's flattened saved tensor; one channel when unknown."""
    if channels and flat.size % (batch * channels) == 0:
        return flat.reshape(batch, channels, -1)
    return flat.reshape(batch, 1, -1) if flat.size % batch == 0 else flat.reshape(1, 1, -1)


def _channel_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Axis-1 size of every tensor whose shape inference gave one (NCHW channels, features)."""
    out = {}
    for vi in [*model.graph.value_info, *model.graph.output, *model.graph.input]:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) >= 2 and dims[1].HasField("dim_value") and dims[1].dim_value > 0:
            out[vi.name] = dims[1].dim_value
    return out


def _input_name(model: onnx.ModelProto) -> str:
    inits = {i.name for i in model.graph.initializer}
    return next(i.name for i in model.graph.input if i.name not in inits)


def _debug_session_options(threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # As collect_activations' own default: no fusion, so every saved tensor is the graph's.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = threads
    return options


# -- accuracy effect ------------------------------------------------------------------------
def union(*groups: Sequence[str]) -> tuple[str, ...]:
    """Node names of all ``groups``, first occurrence order, no repeats."""
    return tuple(dict.fromkeys(n for g in groups for n in g))


def _measure_effects(
    job: Job, table: SensitivityTable, plain: Path, top_k: int, work: Path
) -> None:
    picked, seen = [], set()
    for row in table.rows:
        key = frozenset(row.float_nodes)
        if row.float_nodes and key not in seen and len(picked) < top_k:
            seen.add(key)
            picked.append(row)
    models = {"fp32": job.fp32, "plain": plain}
    for i, row in enumerate(job.track(picked, len(picked), "sensitivity: quantize")):
        nodes = union(table.nodes_to_exclude, row.float_nodes)
        models[f"float:{i}"] = job.quantize(table.target, work / f"float{i}.onnx", nodes)
    ev = job.evaluate(models)
    table.plain_drop, table.fp32_top1, table.eval_images = ev.drop("plain"), ev.score("fp32"), ev.n
    table.metric = ev.metric
    for i, row in enumerate(picked):
        row.drop = round(ev.drop(f"float:{i}"), 3) + 0.0  # + 0.0: no "-0.0"
        row.recovered = round(table.plain_drop - row.drop, 3) + 0.0


# -- plot -----------------------------------------------------------------------------------
def plot_sensitivity(table: SensitivityTable, out: str | os.PathLike[str], limit: int = 30) -> Path:
    """Two panels per layer (worst ``limit``): local SQNR, and top-1 drop with it in float."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table.rows[:limit] or [LayerSensitivity("(no quantized layer)", "", None, 0.0)]
    y = np.arange(len(rows))
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(11, 0.26 * len(rows) + 1.6), dpi=100, sharey=True
    )
    left.barh(y, [min(r.sqnr_db, 80.0) for r in rows], color="tab:blue")
    left.set_yticks(y, [_short(r.layer) for r in rows], fontsize=7)
    left.invert_yaxis()
    left.set_xlabel("SQNR, dB (local; higher is better)", fontsize=8)
    right.barh(y, [np.nan if r.drop is None else r.drop for r in rows], color="tab:green")
    for i, r in enumerate(rows):  # the value, so a 0 reads as measured, not missing
        if r.drop is not None:
            right.text(max(r.drop, 0.0), i, f" {r.drop:.2f}", va="center", fontsize=7)
    if table.plain_drop is not None:
        right.axvline(table.plain_drop, color="tab:red", ls="--", label="plain INT8")
        right.legend(fontsize=7, loc="lower right")
    right.set_xlabel(f"{table.metric} drop with the layer in float (points)", fontsize=8)
    fig.suptitle(f"Quantization sensitivity, {table.target} INT8", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    return out


def _short(name: str, width: int = 42) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]
