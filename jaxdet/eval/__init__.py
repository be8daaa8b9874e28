"""Detection metrics: COCO (equal to pycocotools) and VOC AP, threshold metrics, plots, reports."""

from jaxdet.eval.coco import coco_evaluate
from jaxdet.eval.thresholds import confusion_matrix, f1_curve, precision_recall_f1
from jaxdet.eval.report import format_table, write_report
from jaxdet.eval.voc import voc_evaluate

__all__ = ["coco_evaluate", "confusion_matrix", "f1_curve", "format_table", "precision_recall_f1",
           "voc_evaluate", "write_report"]
