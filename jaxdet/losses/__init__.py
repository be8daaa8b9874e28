"""Loss primitives (unreduced, keyword-only hyper-parameters) and masked reductions."""

from jaxdet.losses.classification import sigmoid_binary_cross_entropy, softmax_cross_entropy
from jaxdet.losses.focal import sigmoid_focal_loss, varifocal_loss
from jaxdet.losses.reduce import masked_mean, masked_sum, normalized_sum, safe_normalizer
from jaxdet.losses.regression import ciou_loss, diou_loss, giou_loss, l1_loss, smooth_l1_loss

__all__ = [
    "ciou_loss", "diou_loss", "giou_loss", "l1_loss", "masked_mean", "masked_sum",
    "normalized_sum", "safe_normalizer", "sigmoid_binary_cross_entropy", "sigmoid_focal_loss",
    "smooth_l1_loss", "softmax_cross_entropy", "varifocal_loss",
]
