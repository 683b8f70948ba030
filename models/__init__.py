"""Architectures (student, teachers), the registry/factory, ONNX export and the bundled weights.

Needs the ``train`` extra (torch, timm). The runtime (``pipeline/``) never imports this package.
"""

from .registry import ModelConfig, create_model, list_models, register_model

__all__ = ["ModelConfig", "create_model", "list_models", "register_model"]
