"""Detection metrics: COCO (equal to pycocotools) and VOC AP, threshold metrics, plots, reports."""

from jaxdet.eval.coco import coco_evaluate
from jaxdet.eval.voc import voc_evaluate

__all__ = ["coco_evaluate", "voc_evaluate"]
