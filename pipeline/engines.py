"""Inference engines: an ONNX model file in, ``(logits, cam)`` out. No torch here.

``OnnxEngine`` is the runtime engine: ONNX Runtime on the CPU, the model's ``sonolens`` metadata
(``pipeline.modelfile.ModelSpec``) read and checked against the graph at load time, so a wrong or broken
file fails with one clear line before the first frame instead of somewhere inside a worker thread.
``sonolens.models.torch_engine.TorchEngine`` has the same interface (eager PyTorch + pytorch-grad-cam)
for parity checks and for the "naive" baseline the benchmarks compare against.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import ModelError
from .modelfile import META_KEY, ModelSpec

# ``busi``, the default, is the breast student the selection rule of docs/loho/SELECTION.md picked (ImageNet
# EfficientNet-Lite0, both training hospitals); ``busi-mnv3`` the paper's MobileNetV3-Small student trained on BUSI
BUNDLED_MODELS = {"busi": "busi_lite0_student.onnx", "busi-mnv3": "busi_student.onnx",
                  "busi-uclm": "busi_uclm_student.onnx", "chest-xray": "chest_xray_student.onnx"}
DEFAULT_BUNDLED = "busi"


@dataclass(frozen=True, slots=True)
class EngineOutput:
    """One image's model outputs: ``logits`` [C]; ``cam`` [C, h, w] (ReLU'd, not normalised) or None;
    ``ood_score`` — the graph's out-of-domain score (higher is further from the training data) or None when the
    model file has no gate."""

    logits: np.ndarray
    cam: np.ndarray | None = None
    ood_score: float | None = None


class Engine(Protocol):
    """What the worker needs from an engine."""

    meta: ModelSpec

    def infer(self, x: np.ndarray, want_cam: bool = True) -> EngineOutput:
        """``x``: float32 [1, 3, H, W], normalised (``pipeline.preprocess``)."""
        ...


def infer_batch(engine: Engine, x: np.ndarray, want_cam: bool = True) -> list[EngineOutput]:
    """One ``EngineOutput`` per image of ``x`` [N, 3, H, W]: one call of the engine's ``infer_batch`` when it has
    one (``OnnxEngine``), else ``infer`` image by image (test doubles, the torch engine). A one-line ``ModelError``
    when the engine answers for another number of images."""
    batched = getattr(engine, "infer_batch", None)
    if batched is not None:
        outs = list(batched(x, want_cam=want_cam))
    else:
        outs = [engine.infer(x[i : i + 1], want_cam=want_cam) for i in range(len(x))]
    if len(outs) != len(x):
        raise ModelError(f"the engine answered {len(outs)} results for a batch of {len(x)} images")
    return outs


def _one_line(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "failed:" in text:  # ORT: "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from P failed:Why"
        text = text.rsplit("failed:", 1)[1].strip() or text
    return text if len(text) <= limit else text[: limit - 1] + "…"


class OnnxEngine:
    """ONNX Runtime session for a sonolens model file.

    ``threads`` is ONNX Runtime's intra-op thread count (0 = its default, one per physical core);
    inter-op parallelism is off (the graph is a chain, and the pipeline has its own threads).
    """

    def __init__(self, path: str | os.PathLike, threads: int = 0, providers: list[str] | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.exists():
            raise ModelError(f"model file {str(self.path)!r} not found")
        if not self.path.is_file():
            raise ModelError(f"model path {str(self.path)!r} is not a file")
        if threads < 0:
            raise ModelError(f"threads must be >= 0 (0 = ONNX Runtime default), got {threads}")

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.enable_cpu_mem_arena = True
        opts.log_severity_level = 3  # errors only: ORT's warnings are not actionable for a user
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts,
                                                providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as exc:  # ORT raises InvalidProtobuf, Fail, InvalidGraph, NoSuchFile…
            raise ModelError(f"{self.path}: not a readable ONNX model ({_one_line(exc)})") from exc

        self.meta = self._read_meta()
        self._check_graph()

    # -- loading --------------------------------------------------------------------------------------
    def _read_meta(self) -> ModelSpec:
        props = self.session.get_modelmeta().custom_metadata_map
        if META_KEY not in props:
            raise ModelError(f"{self.path}: ONNX model has no '{META_KEY}' metadata "
                             f"(export it with 'sonolens export')")
        try:
            return ModelSpec.from_json(props[META_KEY])
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{self.path}: bad '{META_KEY}' metadata ({_one_line(exc)})") from exc

    def _check_graph(self) -> None:
        meta, name = self.meta, self.path
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{name}: expected one input 'image', the graph has {len(inputs)}")
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise ModelError(f"{name}: input must be [N, 3, H, W], the graph has {shape}")
        graph_hw = tuple(shape[2:])
        if all(isinstance(v, int) for v in graph_hw) and graph_hw != tuple(meta.input_size):
            raise ModelError(f"{name}: metadata input_size {tuple(meta.input_size)} does not match the graph "
                             f"input {graph_hw}")
        outputs = {o.name: o for o in self.session.get_outputs()}
        if "logits" not in outputs:
            raise ModelError(f"{name}: the graph has no 'logits' output (outputs: {', '.join(outputs)})")
        self.has_cam = bool(meta.has_cam and "cam" in outputs)
        self.has_ood = "ood_score" in outputs
        if meta.ood and not self.has_ood:
            raise ModelError(f"{name}: metadata has an out-of-domain gate but the graph has no 'ood_score' output")
        if meta.has_cam and "cam" not in outputs:
            raise ModelError(f"{name}: metadata says has_cam but the graph has no 'cam' output")
        # One real run: checks the shapes the graph actually produces (symbolic dims can't be checked
        # statically) and takes the first-run allocation cost out of the first frame.
        h, w = meta.input_size
        x = np.zeros((1, 3, int(h), int(w)), np.float32)
        try:
            logits, cam = self.run(x, want_cam=self.has_cam)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"{name}: the model fails on a {h}x{w} input ({_one_line(exc)})") from exc
        n_classes = len(meta.class_names)
        if logits.shape != (n_classes,):
            raise ModelError(f"{name}: logits have {logits.shape[-1] if logits.ndim else 0} values but the "
                             f"metadata lists {n_classes} class names")
        if cam is not None and (cam.ndim != 3 or cam.shape[0] != n_classes):
            raise ModelError(f"{name}: cam output {cam.shape} is not [{n_classes}, h, w]")
        self.cam_size: tuple[int, int] | None = (int(cam.shape[1]), int(cam.shape[2])) if cam is not None else None

    # -- inference ------------------------------------------------------------------------------------
    def infer(self, x: np.ndarray, want_cam: bool = True) -> EngineOutput:
        """``x``: float32 [1, 3, H, W] → ``EngineOutput`` (logits, CAM when wanted, OOD score when the file has
        one) from one ONNX Runtime call. The OOD score is fetched whenever present: it costs nothing extra."""
        x = self._check_input(x)
        names = ["logits"] + (["cam"] if want_cam and self.has_cam else []) + (["ood_score"] if self.has_ood else [])
        got = dict(zip(names, self.session.run(names, {self.input_name: x})))
        score = got.get("ood_score")
        return EngineOutput(logits=got["logits"][0], cam=got["cam"][0] if "cam" in got else None,
                            ood_score=float(np.asarray(score).reshape(-1)[0]) if score is not None else None)

    def infer_batch(self, x: np.ndarray, want_cam: bool = True) -> list[EngineOutput]:
        """``x``: float32 [N, 3, H, W] (the graph's batch axis is dynamic) → one ``EngineOutput`` per image, from
        one ONNX Runtime call: what ``infer`` gives for each image alone (several streams share a call)."""
        x = self._check_input(x)
        names = ["logits"] + (["cam"] if want_cam and self.has_cam else []) + (["ood_score"] if self.has_ood else [])
        got = dict(zip(names, self.session.run(names, {self.input_name: x})))
        cam, score = got.get("cam"), got.get("ood_score")
        scores = np.asarray(score).reshape(-1) if score is not None else None
        return [EngineOutput(logits=got["logits"][i], cam=cam[i] if cam is not None else None,
                             ood_score=float(scores[i]) if scores is not None else None) for i in range(len(x))]

    def run(self, x: np.ndarray, want_cam: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """``x``: float32 [1, 3, H, W]. Returns ``(logits [C], cam [C, h, w] or None)``.

        With ``want_cam=False`` only ``logits`` is fetched (ONNX Runtime still runs the shared graph).
        """
        logits, cam = self.run_batch(x, want_cam)
        return logits[0], (cam[0] if cam is not None else None)

    def run_batch(self, x: np.ndarray, want_cam: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Batched form: ``x`` [N, 3, H, W] → logits [N, C], cam [N, C, h, w] or None."""
        x = self._check_input(x)
        if want_cam and self.has_cam:
            logits, cam = self.session.run(["logits", "cam"], {self.input_name: x})
            return logits, cam
        (logits,) = self.session.run(["logits"], {self.input_name: x})
        return logits, None

    def ood_scores(self, x: np.ndarray) -> np.ndarray:
        """Batched OOD scores ``[N]`` for ``x`` [N, 3, H, W]; a ``ModelError`` when the file has no gate."""
        if not self.has_ood:
            raise ModelError(f"{self.path}: the model file has no out-of-domain gate ('ood_score' output)")
        (score,) = self.session.run(["ood_score"], {self.input_name: self._check_input(x)})
        return np.asarray(score, dtype=np.float32).reshape(-1)

    def _check_input(self, x: np.ndarray) -> np.ndarray:
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != tuple(self.meta.input_size):
            h, w = self.meta.input_size
            raise ModelError(f"input of shape {tuple(x.shape)} does not fit the model (expects [N, 3, {h}, {w}])")
        return x

    def __repr__(self) -> str:
        return (f"OnnxEngine({str(self.path)!r}, arch={self.meta.arch}, classes={list(self.meta.class_names)}, "
                f"trained={self.meta.trained})")


def _weights_dir() -> Path | None:
    """``<installed sonolens.models>/weights``, located without importing ``sonolens.models``: that package
    belongs to the ``train`` extra, and the runtime's import graph stays numpy + ONNX Runtime only."""
    try:
        spec = importlib.util.find_spec("sonolens.models")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "weights"


def bundled_model_path(name: str) -> Path | None:
    """Path of a bundled model (a name of ``BUNDLED_MODELS``) if it is installed, else None."""
    weights = _weights_dir()
    if name not in BUNDLED_MODELS or weights is None:
        return None
    path = weights / BUNDLED_MODELS[name]
    return path if path.is_file() else None


def default_model_path() -> Path | None:
    """The default bundled breast student (``BUNDLED_MODELS[DEFAULT_BUNDLED]``), or None if it is not installed."""
    return bundled_model_path(DEFAULT_BUNDLED)


def bundled_name_of(path: str | os.PathLike | None) -> str | None:
    """The bundled name (``busi``, ``busi-mnv3``…) a model file is installed as, else None."""
    if path is None:
        return None
    target = Path(path).resolve()
    for name in BUNDLED_MODELS:
        found = bundled_model_path(name)
        if found is not None and found.resolve() == target:
            return name
    return None


NO_MODEL = ("off", "none")  # the one spelling of "run no model", on the command line and in a config file


def resolve_model_path(path_or_name: str | os.PathLike) -> Path:
    """The model file of a path or a bundled name, the one rule everywhere (``run``, ``view``, ``eval``,
    ``fit-ood``…): an existing path wins; a bundled name (``BUNDLED_MODELS``) otherwise; a
    one-line ``ModelError`` naming both when neither exists."""
    key = str(path_or_name)
    path = Path(path_or_name)
    if path.exists():
        return path
    if key in BUNDLED_MODELS:
        found = bundled_model_path(key)
        if found is None:
            weights = _weights_dir()
            where = weights / BUNDLED_MODELS[key] if weights is not None else BUNDLED_MODELS[key]
            raise ModelError(f"bundled model {key!r} is not installed (expected {where}); "
                             f"pass a model file path instead")
        return found
    names = ", ".join(BUNDLED_MODELS)
    raise ModelError(f"model {key!r} not found: not a file, and not a bundled model name ({names})")


def load_engine(path_or_name: str | os.PathLike, threads: int = 0) -> OnnxEngine:
    """An ``OnnxEngine`` for a file path or a bundled model name (``resolve_model_path``)."""
    return OnnxEngine(resolve_model_path(path_or_name), threads=threads)
