"""The out-of-domain score inside the ONNX graph (``models.ood_graph``): graph == numpy reference, files without a
gate unchanged, refits replace the gate, the shipped files carry one."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from sonolens.models.onnx_export import read_spec
from sonolens.models.ood_graph import (
    PREFIX,
    SCORE_OUTPUT,
    OodGate,
    ScorePart,
    add_ood_score,
    feature_tensors,
    has_ood_score,
    reference_score,
    remove_ood_score,
    tensor_stat,
    with_outputs,
)
from sonolens.pipeline.engines import OnnxEngine
from sonolens.training.ood import fit_mahalanobis_part

RTOL = 2e-4


def _session(proto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _raw(proto, names: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """The tensors ``names`` of ``proto`` on input ``x`` (read through extra graph outputs)."""
    return dict(zip(names, _session(with_outputs(proto, names)).run(names, {"image": x})))


def _inputs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 224, 224)).astype(np.float32)


def _random_gates(proto) -> list[OodGate]:
    """One gate per method, each fitted on (or built from) the model's own features of random inputs."""
    t = feature_tensors(proto)
    keys = [("stem", "mean_std"), ("blocks.1", "mean_std"), ("stem", "corr"), ("blocks.1", "logstd"),
            ("blocks.1", "corr"), ("pooled", "vector")]
    raw = _raw(proto, [t[f] for f, _ in keys] + [t["prelogits"]], _inputs(24, seed=1))
    y = np.arange(24) % 3  # three "classes"
    parts = []
    for f, stat in keys:
        part, _ = fit_mahalanobis_part(tensor_stat(raw[t[f]], stat), y, f"{f}:{stat}")
        parts.append(part)
    pre = tensor_stat(raw[t["prelogits"]], "vector")
    bank = pre / np.linalg.norm(pre, axis=1, keepdims=True)
    return [OodGate("mahalanobis", parts), OodGate("mahalanobis", parts[-1:]),  # several parts, and one
            OodGate("mahalanobis", parts[2:3]),  # corr alone (no logstd part on its map)
            OodGate("knn", [ScorePart("prelogits", "vector", {"bank": bank})], {"k": 3}),
            OodGate("energy", [ScorePart("logits", "vector")], {"temperature": 2.0}),
            OodGate("msp", [ScorePart("logits", "vector")])]


@pytest.mark.slow
def test_graph_score_equals_numpy_reference(random_student):
    base = onnx.load(str(random_student))
    t = feature_tensors(base)
    x = _inputs(4, seed=7)  # a batch: the score output has the batch dimension
    for gate in _random_gates(base):
        proto = onnx.load(str(random_student))
        add_ood_score(proto, gate)
        out = {o.name: o for o in proto.graph.output}
        assert out[SCORE_OUTPUT].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert len(out[SCORE_OUTPUT].type.tensor_type.shape.dim) == 1
        logits, cam, score = _session(proto).run(["logits", "cam", SCORE_OUTPUT], {"image": x})
        assert score.shape == (4,) and score.dtype == np.float32
        # logits and cam are untouched by the surgery
        ref_logits, ref_cam = _session(base).run(["logits", "cam"], {"image": x})
        np.testing.assert_array_equal(logits, ref_logits)
        np.testing.assert_array_equal(cam, ref_cam)
        raw = _raw(base, sorted({t[p.feature] for p in gate.parts}), x)
        feats = {p.key: tensor_stat(raw[t[p.feature]], p.stat) for p in gate.parts}
        expected = reference_score(gate, feats)
        np.testing.assert_allclose(score, expected, rtol=RTOL, atol=RTOL * (1 + np.abs(expected).max()),
                                   err_msg=gate.method)
        assert np.ptp(expected) > 0  # the inputs differ, so a constant score would be a broken graph


def test_file_without_gate_loads_and_has_no_score(random_student, tmp_path):
    proto = onnx.load(str(random_student))
    assert not has_ood_score(proto)
    spec = read_spec(random_student)
    assert spec.ood == {} and spec.temperature == 1.0
    engine = OnnxEngine(random_student)
    assert SCORE_OUTPUT not in {o.name for o in engine.session.get_outputs()}
    # add a gate, remove it again: the graph is back to two outputs, no ood/ node or initializer left
    add_ood_score(proto, OodGate("energy", [ScorePart("logits", "vector")]))
    assert has_ood_score(proto)
    assert remove_ood_score(proto) is True
    assert [o.name for o in proto.graph.output] == ["logits", "cam"]
    assert not any(n.name.startswith(PREFIX) for n in proto.graph.node)
    assert not any(i.name.startswith(PREFIX) for i in proto.graph.initializer)
    path = tmp_path / "no_gate.onnx"
    onnx.save(proto, str(path))
    assert SCORE_OUTPUT not in {o.name for o in OnnxEngine(path).session.get_outputs()}


def test_attach_replaces_a_previous_gate_and_writes_the_spec(random_student, tmp_path):
    from sonolens.training.ood import attach_gate

    gates = _random_gates(onnx.load(str(random_student)))
    out = tmp_path / "gated.onnx"
    first = attach_gate(random_student, out, gates[0], threshold=1.5, temperature=2.0, record={"fitted_on": "x"})
    n_nodes = len(onnx.load(str(out)).graph.node)
    second = attach_gate(out, out, gates[4], threshold=-3.0)  # refit in place: energy replaces Mahalanobis
    proto = onnx.load(str(out))
    assert [o.name for o in proto.graph.output].count(SCORE_OUTPUT) == 1
    assert len(proto.graph.node) < n_nodes  # the six Mahalanobis parts are gone
    assert first.ood["method"] == "mahalanobis" and len(first.ood["parts"]) == 6
    assert second.ood["method"] == "energy" and second.ood["threshold"] == -3.0
    assert "fitted_on" not in second.ood  # replaced, not merged
    assert second.temperature == 2.0  # kept when not given
    assert read_spec(out) == second
    engine = OnnxEngine(out)
    assert engine.meta.ood["threshold"] == -3.0 and SCORE_OUTPUT in {o.name for o in engine.session.get_outputs()}


@pytest.mark.slow
def test_int8_graph_gets_the_same_surgery(random_student, tmp_path):
    from sonolens.models.quantize import quantize_int8

    q = tmp_path / "int8.onnx"
    quantize_int8(random_student, q)
    proto = onnx.load(str(q))
    t = feature_tensors(proto)
    assert t["blocks.1"] == feature_tensors(onnx.load(str(random_student)))["blocks.1"]  # Q/DQ nodes skipped
    gate = _random_gates(onnx.load(str(random_student)))[0]
    gated = onnx.load(str(q))
    add_ood_score(gated, gate)
    x = _inputs(2, seed=3)
    (score,) = _session(gated).run([SCORE_OUTPUT], {"image": x})
    raw = _raw(proto, sorted({t[p.feature] for p in gate.parts}), x)
    expected = reference_score(gate, {p.key: tensor_stat(raw[t[p.feature]], p.stat) for p in gate.parts})
    np.testing.assert_allclose(score, expected, rtol=RTOL, atol=RTOL * (1 + np.abs(expected).max()))


def test_channel_statistics_by_hand():
    """corr and logstd on a map whose channels are known functions of one another."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1, 1, 4, 5))
    x = np.concatenate([a, 2 * a + 3, -a, np.full_like(a, 7.0)], axis=1)  # [1, 4, 4, 5]
    corr = tensor_stat(x, "corr")
    assert corr.shape == (1, 6)  # pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    np.testing.assert_allclose(corr[0], [1, -1, 0, -1, 0, 0], atol=1e-12)
    logstd = tensor_stat(x, "logstd")
    sd = a.std()
    np.testing.assert_allclose(logstd[0], np.log([sd, 2 * sd, sd, 0.0] + np.array([1e-6] * 4)), rtol=1e-12)
    from sonolens.models.ood_graph import _part_channels

    assert _part_channels(ScorePart("stem", "corr", {"whiten": np.ones((6, 2)), "means": np.ones((3, 2))})) == 4
    with pytest.raises(ValueError, match="not C"):
        _part_channels(ScorePart("stem", "corr", {"whiten": np.ones((5, 2)), "means": np.ones((3, 2))}))


def test_gate_validation():
    with pytest.raises(ValueError, match="unknown out-of-domain method"):
        OodGate("mystery", [ScorePart("logits")])
    with pytest.raises(ValueError, match="lacks constant"):
        OodGate("mahalanobis", [ScorePart("pooled")])
    with pytest.raises(ValueError, match="k=9"):
        OodGate("knn", [ScorePart("pooled", constants={"bank": np.ones((4, 2))})], {"k": 9})
    with pytest.raises(ValueError, match="unknown statistic"):
        ScorePart("pooled", "median")
    with pytest.raises(ValueError, match="mean_std needs"):
        tensor_stat(np.ones((2, 3)), "mean_std")


@pytest.mark.parametrize("name", ["busi_student.onnx", "busi_student_int8.onnx", "chest_xray_student.onnx"])
def test_shipped_files_carry_gate_and_temperature(name):
    from pathlib import Path

    import sonolens.models

    path = Path(sonolens.models.__file__).parent / "weights" / name
    spec = read_spec(path)
    assert spec.ood["method"] == "mahalanobis" and isinstance(spec.ood["threshold"], float)
    assert spec.ood["n_train"] > 0 and spec.temperature > 0
    engine = OnnxEngine(path)
    outs = {o.name: o for o in engine.session.get_outputs()}
    assert set(outs) == {"logits", "cam", SCORE_OUTPUT}
    h, w = spec.input_size
    x = np.random.default_rng(0).standard_normal((2, 3, h, w)).astype(np.float32)
    (score,) = engine.session.run([SCORE_OUTPUT], {engine.input_name: x})
    assert score.shape == (2,)
    # N(0, 1) noise in normalised space looks like nothing the model was trained on
    assert (score > spec.ood["threshold"]).all()
