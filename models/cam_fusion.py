"""Grad-CAM for every class as part of the forward graph, exported into the ONNX file: one wrapper per CAM recipe
of ``models.adapters`` (``cam_wrapper`` picks it from the student's adapter).

``linear`` (EfficientNet-Lite): the CAM layer feeds global average pooling and a Linear classifier, so
``d logit_c / d A_k(i, j) = W_lin[c, k] / (h*w)`` everywhere and Grad-CAM is Zhou et al.'s CAM (CVPR 2016):
``cam_c = ReLU(sum_k W_lin[c, k] A_k) / (h*w)`` (``LinearCamWrapper``).

``hardswish_head`` (MobileNetV3), why it can be fused: the student's CAM layer (``blocks.5``) feeds *global average
pooling*, so the gradient of a logit with respect to the CAM activations ``A`` [K, h, w] is the same at every spatial
position:

    d logit_c / d A_k(i, j) = g_ck = 1/(h*w) * sum_m W_conv[m, k] * hardswish'(z_m) * W_lin[c, m]

with ``z = conv_head(avgpool(A))`` (pre-activation). Grad-CAM's channel weights (Selvaraju et al., ICCV 2017,
eq. 1) are the spatial mean of that gradient, i.e. ``g_c`` itself, so ``cam_c = ReLU(sum_k g_ck A_k)`` (eq. 2)
for *all* classes costs two small matrix products in the forward graph — no backward pass, no autograd at
runtime, and the runtime (``pipeline/``) only needs ONNX Runtime. Tests check it against pytorch-grad-cam's
``GradCAM``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sonolens.pipeline.errors import ModelError

from .adapters import student_adapter
from .registry import spec_of


class _CamWrapper(nn.Module):
    """What both recipes share: the model, the CAM layer's static shape (so the exported graph has a fixed
    ``[N, C, h, w]`` cam shape instead of shape arithmetic) and the features flattened over positions. A subclass
    checks its head (``check``, a ``ModelError`` listing what does not fit) and turns ``flat`` [N, K, h*w] into
    ``(logits, cam [N, C, h*w])`` (``head``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.check(model)
        self.model = model
        self.channels, self.feat_h, self.feat_w = _feature_shape(model)
        self.num_classes = int(model.classifier.out_features)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, h, w = self.channels, self.feat_h, self.feat_w
        feat = self.model.forward_features(image)  # = output of the CAM layer, [N, K, h, w]
        if not torch.jit.is_tracing() and tuple(feat.shape[1:]) != (k, h, w):
            raise ValueError(f"input {tuple(image.shape)} does not match the model's input_size "
                             f"{tuple(spec_of(self.model).input_size)}")
        logits, cam = self.head(feat.reshape(-1, k, h * w))
        return logits, cam.reshape(-1, self.num_classes, h, w)

    def check(self, model: nn.Module) -> None:
        raise NotImplementedError

    def head(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class FusedCamWrapper(_CamWrapper):
    """``forward(image [N, 3, H, W]) -> (logits [N, C], cam [N, C, h, w])``; ``cam`` is raw Grad-CAM (ReLU
    applied, not normalised), ``(h, w)`` the CAM layer's resolution (7×7 at 224×224).

    Works for timm MobileNetV3-style heads: ``forward_features`` ending at the CAM layer →
    ``global_pool`` (avg) → ``conv_head`` (1x1) → ``norm_head`` (Identity) → ``act2`` (hardswish) →
    ``classifier`` (Linear). Anything else is refused at construction (``ModelError``), not silently
    mis-explained.
    """

    def check(self, model: nn.Module) -> None:
        check_fusable(model)

    def head(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m, k, hw = self.model, self.channels, self.feat_h * self.feat_w
        w_conv = m.conv_head.weight.reshape(m.conv_head.out_channels, k)  # [M, K]
        w_lin = m.classifier.weight  # [C, M]
        # Head, written out so the ONNX graph shares conv_head/classifier weights with the CAM branch.
        pooled = flat.mean(dim=2)  # global average pooling, [N, K]
        z = F.linear(pooled, w_conv, m.conv_head.bias)  # conv_head pre-activation, [N, M]
        logits = F.linear(F.hardswish(z), w_lin, m.classifier.bias)  # [N, C]
        dact = hardswish_grad(z)  # [N, M]
        grads = torch.matmul(dact.unsqueeze(1) * w_lin, w_conv)  # [N, C, K] = h*w * d logit_c / d A_k
        return logits, torch.relu(torch.matmul(grads, flat) * (1.0 / hw))  # cam [N, C, h*w]


class LinearCamWrapper(_CamWrapper):
    """``forward(image) -> (logits, cam)`` like ``FusedCamWrapper``, for the ``linear`` recipe: ``forward_features``
    ends at the CAM layer → ``global_pool`` (avg) → ``classifier`` (Linear). Refused otherwise (``ModelError``)."""

    def check(self, model: nn.Module) -> None:
        check_linear_head(model)

    def head(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m, hw = self.model, self.feat_h * self.feat_w
        logits = m.classifier(flat.mean(dim=2))  # global average pooling, then the Linear classifier
        return logits, torch.relu(torch.matmul(m.classifier.weight, flat) * (1.0 / hw))  # cam [N, C, h*w]


def cam_wrapper(model: nn.Module) -> nn.Module:
    """The in-graph CAM wrapper of ``model``'s recipe (its student adapter, ``models.adapters``)."""
    recipe = student_adapter(spec_of(model).arch).cam_recipe
    return {"hardswish_head": FusedCamWrapper, "linear": LinearCamWrapper}[recipe](model)


def spread_random_head(model: nn.Module, feat: torch.Tensor, target_std: float = 2.0) -> None:
    """For a *random* init: scale the recipe's non-linear head so its pre-activation on features ``feat`` has std
    ``target_std`` and every branch of its derivative occurs, as in a trained head (``hardswish_head``: conv_head's
    output z, so that z <= -3, the dip just above -3, the middle and z >= 3 all occur). A linear head has none."""
    if student_adapter(spec_of(model).arch).cam_recipe != "hardswish_head":
        return
    with torch.no_grad():
        z = model.conv_head(feat.mean((2, 3), keepdim=True))
        scale = target_std / float(z.std())
        model.conv_head.weight.mul_(scale)
        model.conv_head.bias.mul_(scale)


def _feature_shape(model: nn.Module) -> tuple[int, int, int]:
    """``(K, h, w)`` of the CAM layer at the model's input size: static sizes, so the exported graph has a fixed
    ``[N, C, h, w]`` cam shape instead of shape arithmetic."""
    h, w = spec_of(model).input_size
    was_training = model.training
    model.eval()  # a probe in train mode would update BatchNorm running statistics
    with torch.no_grad():
        feat = model.forward_features(torch.zeros(1, 3, int(h), int(w)))
    model.train(was_training)
    k, fh, fw = (int(v) for v in feat.shape[1:])
    return k, fh, fw


def hardswish_grad(z: torch.Tensor) -> torch.Tensor:
    """d hardswish / dz exactly as torch's autograd computes it: 0 for z <= -3, z/3 + 1/2 for -3 < z < 3,
    1 for z >= 3. Note it is *not* a clamp: it dips to -1/2 just above -3 and jumps from 3/2 to 1 at 3."""
    zero, one = torch.zeros((), dtype=z.dtype), torch.ones((), dtype=z.dtype)
    return torch.where(z <= -3.0, zero, torch.where(z >= 3.0, one, z / 3.0 + 0.5))


def _common_problems(model: nn.Module) -> list[str]:
    """What both recipes need: the spec's CAM layer is the adapter's (the last module of ``forward_features``),
    average pooling, a Linear classifier."""
    spec = spec_of(model)
    problems = []
    if spec.cam_layer != student_adapter(spec.arch).cam_layer:
        problems.append(f"cam_layer {spec.cam_layer!r} is not the layer feeding global pooling "
                        f"({student_adapter(spec.arch).cam_layer!r})")
    if getattr(getattr(model, "global_pool", None), "pool_type", None) != "avg":
        problems.append("global_pool is not average pooling")
    if not isinstance(getattr(model, "classifier", None), nn.Linear):
        problems.append("classifier is not a Linear layer")
    return problems


def check_linear_head(model: nn.Module) -> None:
    """Raise ``ModelError`` listing every reason ``LinearCamWrapper`` cannot explain ``model`` (none: it can)."""
    problems = _common_problems(model)
    if problems:
        raise ModelError(f"cannot compute the CAM of {spec_of(model).arch} in the graph: " + "; ".join(problems))


def check_fusable(model: nn.Module) -> None:
    """Raise ``ModelError`` listing every reason ``FusedCamWrapper`` cannot explain ``model`` (none: it can)."""
    spec = spec_of(model)
    problems = _common_problems(model)
    conv = getattr(model, "conv_head", None)
    if not isinstance(conv, nn.Conv2d) or conv.kernel_size != (1, 1) or conv.groups != 1:
        problems.append("conv_head is not a 1x1 convolution")
    if not isinstance(getattr(model, "norm_head", nn.Identity()), nn.Identity):
        problems.append("norm_head is not Identity")
    if not isinstance(getattr(model, "act2", None), nn.Hardswish):
        problems.append("act2 is not hardswish")
    if problems:
        raise ModelError(f"cannot fuse Grad-CAM into {spec.arch}: " + "; ".join(problems))
