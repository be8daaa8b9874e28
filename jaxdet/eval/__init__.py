"""Detection metrics: COCO (equal to pycocotools) and VOC AP, threshold metrics, plots, reports."""

from jaxdet.eval.coco import coco_evaluate

__all__ = ["coco_evaluate"]
