"""Architectures (student, teachers), the registry/factory, checkpoints, ONNX export and the bundled weights.

Needs the ``train`` extra (torch, timm). The runtime (``pipeline/``) never imports this package.

Module map:

* ``registry`` — ``register_model`` / ``create_model`` / ``list_models``; every model carries its
  ``pipeline.modelfile.ModelSpec`` as ``model.sonolens_spec``;
* ``student`` (MobileNetV3-Small), ``student_lite`` (EfficientNet-Lite0, -Lite1, -Lite2), ``teacher`` — the
  architectures; importing them registers them (done here, timm's style);
* ``adapters`` — each student's adapter record (CAM recipe, feature stages, input defaults), registered beside its
  builder; the generic code below reads it;
* ``checkpoint`` — ``save_checkpoint`` / ``load_checkpoint``, the one checkpoint format;
* ``cam_fusion`` — the closed-form Grad-CAM wrapper exported into the ONNX graph;
* ``onnx_export`` — ``export_onnx``, ``build_spec``, ``read_spec``, ``export_random_student``;
* ``random_student`` — the randomly initialised student for tests and benchmarks;
* ``quantize`` — static INT8 and its calibration data;
* ``torch_engine`` — eager PyTorch + pytorch-grad-cam, the reference engine.

``sonolens export`` (a CLI that also reads datasets) lives in ``training.export_cli``: nothing here imports
``training``.
"""

from . import student, student_lite  # noqa: F401  (register the students and their adapters)
from .registry import create_model, list_models, register_model

try:  # registers the teachers; they need only torch/timm, but a trimmed install must still get the student
    from . import teacher  # noqa: F401
except ImportError:  # pragma: no cover - depends on the installation
    pass

__all__ = ["create_model", "list_models", "register_model"]
