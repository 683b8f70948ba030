"""The out-of-domain score inside the ONNX graph: graph surgery on an exported sonolens model (``onnx`` only).

A sonolens model file (``pipeline.modelfile``) may carry a third output, ``ood_score`` float32 ``[N]`` (higher =
further from the training data), computed from the *same* forward pass as ``logits`` and ``cam``. This module

* names the feature tensors of an exported graph (``feature_tensors``): the stages of the student's adapter
  (``models.adapters``, read from the file's ``arch``: ``stem`` and ``blocks.0`` … ``blocks.5`` on MobileNetV3-Small,
  ``blocks.6`` on EfficientNet-Lite0; the output of the stem and of each stage of the backbone, ``[N, C, h, w]``),
  ``pooled`` (the globally
  average-pooled last feature map, ``[N, 576]`` for MobileNetV3-Small: the ``ReduceMean`` the fused CAM uses),
  ``prelogits`` (the vector the classifier reads, ``[N, 1024]``) and ``logits``;
* exposes any tensors as extra graph outputs for feature extraction (``with_outputs``), so fitting reads the
  features of the very graph the runtime runs (fp32 or INT8);
* appends the score nodes of a fitted ``OodGate`` with its constants as initializers (``add_ood_score``), or
  removes them again (``remove_ood_score``); node and initializer names start with ``ood/``;
* computes the same score in numpy (``reference_score``, float64), the reference the tests hold the graph to.

A gate is a sum of *parts*. Each part reads one tensor, reduces it with a statistic (``vector``: used as is;
``mean_std``: the per-channel spatial mean and standard deviation of a feature map, ``[N, 2C]``; ``corr``: the
correlation between every two channels over the map's positions, ``[N, C(C-1)/2]`` — a Gram matrix of the centred,
normalised channels, after Sastry & Oore, ICML 2020, and blind to a channel's gain and offset, which is where
breast scanners differ most; ``logstd``: the log of the per-channel standard deviation, ``[N, C]``), scores that
vector, and is standardised: ``(score - offset) / scale``. Methods (``OodGate.method``):

* ``mahalanobis`` — Lee et al., NeurIPS 2018: class-conditional Gaussians with one shared covariance Σ per part,
  ``min_c (f - μ_c)ᵀ Σ⁻¹ (f - μ_c)``; several parts = their "feature ensemble" over layers. Σ⁻¹ is factored at
  fit time as ``W Wᵀ``, so each part is MatMul (``f·W``), Sub (``μ_c W``), ReduceSumSquare, ReduceMin;
* ``knn`` — Sun et al., ICML 2022: cosine distance of the L2-normalised feature to its k-th nearest training
  feature (ReduceL2, Div, MatMul against the normalised bank, TopK, Gather);
* ``energy`` — Liu et al., NeurIPS 2020: ``-T·logsumexp(logits / T)`` (ReduceLogSumExp);
* ``msp`` — Hendrycks & Gimpel, ICLR 2017, the baseline: ``-max softmax(logits)``.

Fitting (which training images, which layers, which threshold) is ``training.ood``'s job; nothing here reads data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCORE_OUTPUT = "ood_score"
PREFIX = "ood/"
METHODS = ("mahalanobis", "knn", "energy", "msp")
STATS = ("vector", "mean_std", "corr", "logstd")
EPS_STD = 1e-6  # logstd: log(std + EPS_STD), so a constant channel stays finite
EPS_VAR2 = 1e-12  # corr: cov_ij / sqrt(max(var_i var_j, EPS_VAR2)), so a constant channel correlates 0
HEAD_FEATURES = ("pooled", "prelogits", "logits")  # found from the classifier, on every student


@dataclass
class ScorePart:
    """One term of a gate: ``(score(stat(tensor)) - offset) / scale``.

    ``feature``: a stage of the student's adapter, a name of ``HEAD_FEATURES``, or a graph tensor name;
    ``stat``: one of ``STATS``;
    ``constants``: ``whiten`` [D, K] and ``means`` [C, K] (Mahalanobis: class means already times ``whiten``),
    ``bank`` [M, D] (k-NN: L2-normalised training features); none for energy/MSP.
    """

    feature: str
    stat: str = "vector"
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    offset: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.stat not in STATS:
            raise ValueError(f"unknown statistic {self.stat!r} (known: {', '.join(STATS)})")
        if not self.scale > 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        self.constants = {k: np.asarray(v, dtype=np.float32) for k, v in self.constants.items()}
        self.offset, self.scale = float(self.offset), float(self.scale)

    @property
    def key(self) -> str:
        """``feature:stat``, the key of this part's input in ``reference_score``."""
        return f"{self.feature}:{self.stat}"


@dataclass
class OodGate:
    """A fitted out-of-domain score: ``method`` (one of ``METHODS``), its ``parts`` (summed), and parameters
    (``k`` for k-NN, ``temperature`` for energy)."""

    method: str
    parts: list[ScorePart]
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown out-of-domain method {self.method!r} (known: {', '.join(METHODS)})")
        if not self.parts:
            raise ValueError("a gate needs at least one part")
        if self.method in ("energy", "msp") and (len(self.parts) != 1 or self.parts[0].stat != "vector"):
            raise ValueError(f"{self.method} reads one vector (the logits)")
        if self.method == "knn" and len(self.parts) != 1:
            raise ValueError("knn reads one feature")
        for p in self.parts:
            need = {"mahalanobis": ("whiten", "means"), "knn": ("bank",)}.get(self.method, ())
            missing = [k for k in need if k not in p.constants]
            if missing:
                raise ValueError(f"{self.method} part {p.key} lacks constant(s) {', '.join(missing)}")
            if self.method == "mahalanobis":
                w, m = p.constants["whiten"], p.constants["means"]
                if w.ndim != 2 or m.ndim != 2 or m.shape[1] != w.shape[1]:
                    raise ValueError(f"whiten {w.shape} and means {m.shape} do not fit ([D, K] and [C, K])")
        if self.method == "knn":
            k = int(self.params.get("k", 1))
            if not 1 <= k <= len(self.parts[0].constants["bank"]):
                raise ValueError(f"k={k} must lie in [1, {len(self.parts[0].constants['bank'])}]")
            self.params["k"] = k

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.parts]


# ------------------------------------------------------------------------------------------------------------
# Numpy reference
# ------------------------------------------------------------------------------------------------------------
def tensor_stat(x: np.ndarray, stat: str) -> np.ndarray:
    """``stat`` of a tensor, float64: ``vector`` → ``[N, D]`` (flattened). Of a feature map ``[N, C, h, w]``:
    ``mean_std`` → ``[N, 2C]``, the per-channel mean over ``h, w`` followed by the per-channel (population) standard
    deviation; ``logstd`` → ``[N, C]``, ``log(std + EPS_STD)``; ``corr`` → ``[N, C(C-1)/2]``, the Pearson
    correlation of channels ``i < j`` over the ``h·w`` positions, row by row:
    ``cov_ij / sqrt(max(var_i·var_j, EPS_VAR2))`` (population moments; a constant channel correlates 0)."""
    x = np.asarray(x, dtype=np.float64)
    if stat == "vector":
        return x.reshape(len(x), -1)
    if stat not in STATS:
        raise ValueError(f"unknown statistic {stat!r}")
    if x.ndim != 4:
        raise ValueError(f"{stat} needs an [N, C, h, w] tensor, got shape {x.shape}")
    if stat == "mean_std":
        return np.concatenate([x.mean(axis=(2, 3)), x.std(axis=(2, 3))], axis=1)
    if stat == "logstd":
        return np.log(x.std(axis=(2, 3)) + EPS_STD)
    n, c = x.shape[:2]
    xc = x.reshape(n, c, -1) - x.reshape(n, c, -1).mean(axis=2, keepdims=True)
    cov = xc @ xc.transpose(0, 2, 1) / xc.shape[2]
    var = np.diagonal(cov, axis1=1, axis2=2)
    i, j = np.triu_indices(c, 1)
    return cov[:, i, j] / np.sqrt(np.maximum(var[:, i] * var[:, j], EPS_VAR2))


def part_score(method: str, part: ScorePart, f: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """The raw (unstandardised) score of one part on its statistic ``f`` [N, D], float64."""
    c = {k: v.astype(np.float64) for k, v in part.constants.items()}
    if method == "mahalanobis":
        z = f @ c["whiten"]
        return ((z[:, None, :] - c["means"][None]) ** 2).sum(axis=2).min(axis=1)
    if method == "knn":
        fn = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
        sims = fn @ c["bank"].T
        k = int(params["k"])
        return 1.0 - (-np.partition(-sims, k - 1, axis=1)[:, k - 1])
    if method == "energy":
        t = float(params.get("temperature", 1.0))
        z = f / t
        m = z.max(axis=1, keepdims=True)
        return -t * (m[:, 0] + np.log(np.exp(z - m).sum(axis=1)))
    z = f - f.max(axis=1, keepdims=True)  # msp
    return -(np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)).max(axis=1)


def reference_score(gate: OodGate, feats: Mapping[str, np.ndarray]) -> np.ndarray:
    """The gate's score in float64 — what the graph's ``ood_score`` computes in float32. ``feats`` maps each
    part's ``key`` (``feature:stat``) to its statistic ``[N, D]`` (``tensor_stat`` of the raw tensor)."""
    total = None
    for p in gate.parts:
        if p.key not in feats:
            raise KeyError(f"no input for part {p.key}")
        s = (part_score(gate.method, p, np.asarray(feats[p.key], np.float64), gate.params) - p.offset) / p.scale
        total = s if total is None else total + s
    assert total is not None
    return total


# ------------------------------------------------------------------------------------------------------------
# Finding tensors
# ------------------------------------------------------------------------------------------------------------
_QDQ = ("QuantizeLinear", "DequantizeLinear")


def _producers(proto: Any) -> dict[str, Any]:
    return {out: node for node in proto.graph.node for out in node.output}


def feature_tensors(proto: Any) -> dict[str, str]:
    """Graph tensor name of every feature (the adapter's stages, ``HEAD_FEATURES``) this graph has.

    ``prelogits``: the data input of the node that writes ``logits`` (Gemm, or MatMul [+ Add]); ``pooled``: the
    output of the global average pool (``ReduceMean``/``GlobalAveragePool``) upstream of it; ``stem`` and
    ``blocks.i``: the last float output (quantise/dequantise nodes skipped) of the nodes the TorchScript exporter
    scoped under the stage's module (the adapter's ``onnx_prefix``: ``/bn1/…``, ``/blocks/blocks.i/…``); the adapter
    is that of the file's ``arch`` (metadata), MobileNetV3-Small's for a graph without one. ``ValueError``
    when there is no ``logits``-writing classifier or no pool upstream of it.
    """
    prod = _producers(proto)
    head = prod.get("logits")
    if head is None:
        raise ValueError("the graph has no 'logits' output")
    if head.op_type == "Add":  # MatMul + Add instead of Gemm
        head = next((prod[i] for i in head.input if i in prod and prod[i].op_type == "MatMul"), head)
    if head.op_type not in ("Gemm", "MatMul"):
        raise ValueError(f"'logits' is written by {head.op_type}, not by a Gemm/MatMul classifier")
    prelogits = head.input[0]
    inits = {t.name for t in proto.graph.initializer}
    seen, todo, pooled = set(), [prelogits], None
    while todo:  # breadth-first up the data path until the global pool
        node = prod.get(todo.pop(0))
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type in ("ReduceMean", "GlobalAveragePool"):
            pooled = node.output[0]
            break
        todo.extend(i for i in node.input if i and i not in inits)
    if pooled is None:
        raise ValueError("no global average pool found upstream of the classifier")
    out = {"pooled": pooled, "prelogits": prelogits, "logits": "logits"}
    for name, prefix in ((st.name, st.onnx_prefix) for st in graph_adapter(proto).stages):
        last = [n for n in proto.graph.node if n.name.startswith(prefix) and n.op_type not in _QDQ
                and not n.name.startswith(PREFIX)]
        if last:
            out[name] = last[-1].output[0]
    return out


def graph_adapter(proto: Any) -> Any:
    """The student adapter of an exported graph: its metadata's ``arch`` (``models.adapters``)."""
    import json

    from sonolens.pipeline.modelfile import META_KEY

    from .adapters import adapter_for_arch

    meta = next((p.value for p in proto.metadata_props if p.key == META_KEY), None)
    try:
        arch = json.loads(meta).get("arch") if meta else None
    except ValueError:
        arch = None
    return adapter_for_arch(arch)


def resolve_feature(proto: Any, feature: str, tensors: Mapping[str, str] | None = None) -> str:
    """The graph tensor of ``feature`` (a stage or head feature name, or already a tensor name)."""
    if feature in HEAD_FEATURES or feature in graph_adapter(proto).stage_names:
        tensors = tensors or feature_tensors(proto)
        if feature not in tensors:
            raise ValueError(f"the graph has no {feature!r} tensor")
        return tensors[feature]
    return feature


def _batch_dim(proto: Any) -> str | int:
    dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_param if dim.HasField("dim_param") else (dim.dim_value or "batch")


def with_outputs(proto: Any, names: Iterable[str]) -> Any:
    """A copy of ``proto`` with the float32 tensors ``names`` added as graph outputs (shape left unspecified), for
    reading intermediate features with ONNX Runtime. The original is unchanged."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    have = {o.name for o in out.graph.output}
    for name in names:
        if name not in have:
            out.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
            have.add(name)
    return out


# ------------------------------------------------------------------------------------------------------------
# Surgery
# ------------------------------------------------------------------------------------------------------------
def has_ood_score(proto: Any) -> bool:
    return any(o.name == SCORE_OUTPUT for o in proto.graph.output)


def remove_ood_score(proto: Any) -> bool:
    """Remove the ``ood_score`` output and every ``ood/`` node and initializer; ``True`` if there was a score."""
    had = has_ood_score(proto)
    g = proto.graph
    kept = ([o for o in g.output if o.name != SCORE_OUTPUT], [n for n in g.node if not n.name.startswith(PREFIX)],
            [t for t in g.initializer if not t.name.startswith(PREFIX)],
            [v for v in g.value_info if not v.name.startswith(PREFIX) and v.name != SCORE_OUTPUT])
    for seq, keep in zip((g.output, g.node, g.initializer, g.value_info), kept):
        del seq[:]
        seq.extend(keep)
    return had


def _opset(proto: Any) -> int:
    return max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=17)


class _Builder:
    """Collects ``ood/`` nodes and initializers; Reduce* axes as attribute (opset < 18) or input (>= 18)."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.moments: dict[str, tuple[str, str]] = {}  # feature map → (covariance, variances), shared by parts

    def const(self, name: str, value: Any, dtype: Any = np.float32) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), PREFIX + name))
        return PREFIX + name

    def node(self, op: str, inputs: list[str], name: str, out: str | None = None, n_out: int = 1,
             **attrs: Any) -> str:
        from onnx import helper

        outs = [out or PREFIX + name] + [f"{PREFIX}{name}_{i}" for i in range(1, n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=PREFIX + name, **attrs))
        return outs[0]

    def reduce(self, op: str, x: str, axes: list[int], name: str, keepdims: int = 0, out: str | None = None) -> str:
        if self.opset >= 18:
            return self.node(op, [x, self.const(name + "_axes", axes, np.int64)], name, out, keepdims=keepdims)
        return self.node(op, [x], name, out, axes=axes, keepdims=keepdims)


def _moments(b: _Builder, tensor: str, tag: str, channels: int) -> tuple[str, str]:
    """The covariance of the channels of ``tensor`` [N, C, h, w] over its positions, flattened ``[N, C·C]``, and
    the variances ``[N, C]`` (clipped at 0); built once per tensor and shared by its ``corr`` and ``logstd`` parts.
    From the raw Gram matrix, ``E[x xᵀ] - E[x] E[x]ᵀ``: one MatMul over the map (and its Transpose) and a
    ReduceMean, the rest on C×C — the centred form's full-size Sub and Div took three times as long on the stem
    (16×112×112) in ONNX Runtime 1.32. The maps' values are O(1), so float32 cancellation stays far below the
    tests' tolerance against the float64 reference — except for a (nearly) constant channel, whose tiny variance
    the subtraction does not resolve: there ``logstd`` and ``corr`` of the graph and of the reference part ways
    (what a file flags is its graph's score; ``ood-eval`` reports that one)."""
    if tensor not in b.moments:
        flat = b.node("Reshape", [tensor, b.const(f"{tag}/flat_shape", [0, 0, -1], np.int64)], f"{tag}/flat")
        gram = b.node("MatMul", [flat, b.node("Transpose", [flat], f"{tag}/flat_t", perm=[0, 2, 1])], f"{tag}/gram")
        size = b.node("Cast", [b.node("Gather", [b.node("Shape", [flat], f"{tag}/shape"),
                                                 b.const(f"{tag}/axis2", 2, np.int64)], f"{tag}/positions_i", axis=0)],
                      f"{tag}/positions", to=1)
        mean = b.reduce("ReduceMean", flat, [2], f"{tag}/map_mean", keepdims=1)  # [N, C, 1]
        outer = b.node("MatMul", [mean, b.node("Transpose", [mean], f"{tag}/mean_t", perm=[0, 2, 1])],
                       f"{tag}/mean_outer")
        cov = b.node("Sub", [b.node("Div", [gram, size], f"{tag}/second_moment"), outer], f"{tag}/cov_square")
        cov = b.node("Reshape", [cov, b.const(f"{tag}/cov_shape", [0, -1], np.int64)], f"{tag}/cov")
        diag = b.const(f"{tag}/diag", np.arange(channels) * (channels + 1), np.int64)
        var = b.node("Max", [b.node("Gather", [cov, diag], f"{tag}/var_raw", axis=1), b.const(f"{tag}/zero", 0.0)],
                     f"{tag}/var")
        b.moments[tensor] = (cov, var)
    return b.moments[tensor]


def _stat_nodes(b: _Builder, tensor: str, stat: str, tag: str, channels: int | None = None) -> str:
    """Nodes for ``stat`` of ``tensor``. ``mean_std`` of [N, C, h, w]: the per-channel mean and the standard
    deviation ``sqrt(max(E[x²] - E[x]², 0))``, as two ReduceMean (of x and of x·x): one full-size intermediate
    instead of the centred form's two; ReduceSumSquare was slower still in ONNX Runtime 1.32's profile. The
    feature maps' values are O(1), so float32 cancellation stays far below the tests' tolerance against the
    float64 reference. ``logstd`` and ``corr`` read the channel covariance (``_moments``); ``corr`` gathers the
    ``C(C-1)/2`` entries above its diagonal and divides by ``sqrt(max(var_i·var_j, EPS_VAR2))``. ``channels``
    (C) is needed for both."""
    if stat == "vector":
        return tensor
    if stat in ("logstd", "corr"):
        if not channels:
            raise ValueError(f"{stat} needs the number of channels")
        cov, var = _moments(b, tensor, tag, channels)
        if stat == "logstd":
            std = b.node("Sqrt", [var], f"{tag}/std")
            return b.node("Log", [b.node("Add", [std, b.const(f"{tag}/eps", EPS_STD)], f"{tag}/std_eps")],
                          f"{tag}/logstd")
        i, j = np.triu_indices(channels, 1)
        num = b.node("Gather", [cov, b.const(f"{tag}/upper", i * channels + j, np.int64)], f"{tag}/cov_upper", axis=1)
        vi = b.node("Gather", [var, b.const(f"{tag}/row", i, np.int64)], f"{tag}/var_i", axis=1)
        vj = b.node("Gather", [var, b.const(f"{tag}/col", j, np.int64)], f"{tag}/var_j", axis=1)
        var_ij = b.node("Max", [b.node("Mul", [vi, vj], f"{tag}/var_ij_raw"), b.const(f"{tag}/tiny", EPS_VAR2)],
                        f"{tag}/var_ij")
        den = b.node("Sqrt", [var_ij], f"{tag}/sd_ij")
        return b.node("Div", [num, den], f"{tag}/corr")
    mean = b.reduce("ReduceMean", tensor, [2, 3], f"{tag}/mean")  # [N, C]
    mean_sq = b.reduce("ReduceMean", b.node("Mul", [tensor, tensor], f"{tag}/square"), [2, 3], f"{tag}/mean_sq")
    var = b.node("Max", [b.node("Sub", [mean_sq, b.node("Mul", [mean, mean], f"{tag}/sq_mean")], f"{tag}/var_raw"),
                         b.const(f"{tag}/zero", 0.0)], f"{tag}/var")
    std = b.node("Sqrt", [var], f"{tag}/std")
    return b.node("Concat", [mean, std], f"{tag}/mean_std", axis=1)  # [N, 2C]


def _part_nodes(b: _Builder, method: str, part: ScorePart, f: str, tag: str, params: Mapping[str, Any]) -> str:
    if method == "mahalanobis":
        z = b.node("MatMul", [f, b.const(f"{tag}/whiten", part.constants["whiten"])], f"{tag}/whiten_matmul")
        z3 = b.node("Unsqueeze", [z, b.const(f"{tag}/axis1", [1], np.int64)], f"{tag}/unsqueeze")  # [N, 1, K]
        diff = b.node("Sub", [z3, b.const(f"{tag}/means", part.constants["means"])], f"{tag}/sub_means")
        d2 = b.reduce("ReduceSumSquare", diff, [2], f"{tag}/sq_dist")  # [N, C]
        return b.reduce("ReduceMin", d2, [1], f"{tag}/min_class")  # [N]
    if method == "knn":
        norm = b.reduce("ReduceL2", f, [1], f"{tag}/l2", keepdims=1)
        unit = b.node("Div", [f, b.node("Max", [norm, b.const(f"{tag}/eps", 1e-12)], f"{tag}/l2_safe")],
                      f"{tag}/normalise")
        sims = b.node("MatMul", [unit, b.const(f"{tag}/bank_t", part.constants["bank"].T)], f"{tag}/similarity")
        k = int(params["k"])
        top = b.node("TopK", [sims, b.const(f"{tag}/k", [k], np.int64)], f"{tag}/topk", n_out=2, axis=1,
                     largest=1, sorted=1)
        kth = b.node("Gather", [top, b.const(f"{tag}/kth_index", k - 1, np.int64)], f"{tag}/kth", axis=1)  # [N]
        return b.node("Sub", [b.const(f"{tag}/one", 1.0), kth], f"{tag}/distance")
    if method == "energy":
        t = float(params.get("temperature", 1.0))
        lse = b.reduce("ReduceLogSumExp", b.node("Mul", [f, b.const(f"{tag}/inv_t", 1.0 / t)], f"{tag}/scale"),
                       [1], f"{tag}/logsumexp")
        return b.node("Mul", [lse, b.const(f"{tag}/neg_t", -t)], f"{tag}/energy")
    mx = b.reduce("ReduceMax", b.node("Softmax", [f], f"{tag}/softmax", axis=1), [1], f"{tag}/max_prob")  # msp
    return b.node("Neg", [mx], f"{tag}/neg")


def _part_channels(part: ScorePart) -> int | None:
    """C of a ``corr`` or ``logstd`` part, from its input width D (the ``whiten`` rows or the ``bank`` columns):
    D = C(C-1)/2 for ``corr``, D = C for ``logstd``; ``None`` for the other statistics."""
    if part.stat not in ("corr", "logstd"):
        return None
    c = part.constants
    d = int(c["whiten"].shape[0]) if "whiten" in c else int(c["bank"].shape[1]) if "bank" in c else 0
    if part.stat == "logstd":
        if d < 1:
            raise ValueError(f"part {part.key}: no input width")
        return d
    channels = int(round((1 + np.sqrt(1 + 8 * d)) / 2))
    if d < 1 or channels * (channels - 1) // 2 != d:
        raise ValueError(f"part {part.key}: width {d} is not C(C-1)/2 for any channel count C")
    return channels


def add_ood_score(proto: Any, gate: OodGate) -> list[str]:
    """Append ``gate``'s score nodes to ``proto`` (in place) and declare the output ``ood_score`` float32 [batch].

    Any previous ``ood_score`` is removed first, so refitting a file replaces its gate. Returns the graph tensor
    each part reads. ``ValueError`` when a tensor is missing; ``onnx.checker`` validates the result.
    """
    import onnx
    from onnx import TensorProto, helper

    remove_ood_score(proto)
    tensors = feature_tensors(proto)
    known = {o for n in proto.graph.node for o in n.output} | {i.name for i in proto.graph.input}
    b = _Builder(_opset(proto))
    read, terms = [], []
    for i, part in enumerate(gate.parts):
        tensor = resolve_feature(proto, part.feature, tensors)
        if tensor not in known:
            raise ValueError(f"the graph has no tensor {tensor!r} to score")
        read.append(tensor)
        tag = f"p{i}"
        stat = _stat_nodes(b, tensor, part.stat, tag, _part_channels(part))
        raw = _part_nodes(b, gate.method, part, stat, tag, gate.params)
        if part.offset != 0.0 or part.scale != 1.0:
            raw = b.node("Div", [b.node("Sub", [raw, b.const(f"{tag}/offset", part.offset)], f"{tag}/minus_offset"),
                                 b.const(f"{tag}/scale", part.scale)], f"{tag}/standardise")
        terms.append(raw)
    if len(terms) == 1:
        b.node("Identity", terms, "score", SCORE_OUTPUT)
    else:
        b.node("Sum", terms, "score", SCORE_OUTPUT)
    proto.graph.node.extend(b.nodes)
    proto.graph.initializer.extend(b.inits)
    proto.graph.output.append(helper.make_tensor_value_info(SCORE_OUTPUT, TensorProto.FLOAT, [_batch_dim(proto)]))
    onnx.checker.check_model(proto)
    return read


def gate_summary(gate: OodGate, tensors: list[str]) -> dict[str, Any]:
    """The JSON-ready description of ``gate``'s graph side for ``ModelSpec.ood``."""
    parts = []
    for p, t in zip(gate.parts, tensors):
        d: dict[str, Any] = {"feature": p.feature, "stat": p.stat, "tensor": t, "offset": p.offset, "scale": p.scale}
        if gate.method == "mahalanobis":
            d["dim"] = int(p.constants["whiten"].shape[0])
            d["gaussians"] = int(p.constants["means"].shape[0])
        if gate.method == "knn":
            d["dim"], d["bank_size"] = int(p.constants["bank"].shape[1]), int(p.constants["bank"].shape[0])
        parts.append(d)
    out: dict[str, Any] = {"method": gate.method, "output": SCORE_OUTPUT, "parts": parts}
    out.update({k: v for k, v in gate.params.items() if isinstance(v, (int, float, str, bool))})
    return out
