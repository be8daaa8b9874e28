"""Box ops with torchvision.ops semantics: jit/vmap-able, static shapes, xyxy unless named."""

# --- boxes & nms (ops A) ---
from jaxdet.ops.boxes import box_area
from jaxdet.ops.boxes import box_convert
from jaxdet.ops.boxes import box_iou
from jaxdet.ops.boxes import clip_boxes_to_image
from jaxdet.ops.boxes import complete_box_iou
from jaxdet.ops.boxes import complete_box_iou_loss
from jaxdet.ops.boxes import distance_box_iou
from jaxdet.ops.boxes import distance_box_iou_loss
from jaxdet.ops.boxes import generalized_box_iou
from jaxdet.ops.boxes import generalized_box_iou_loss
from jaxdet.ops.boxes import remove_small_boxes
from jaxdet.ops.nms import NmsResult
from jaxdet.ops.nms import SoftNmsResult
from jaxdet.ops.nms import batched_nms
from jaxdet.ops.nms import nms
from jaxdet.ops.nms import soft_nms

# --- roi_align, anchors, coders, matching (ops B) ---
from jaxdet.ops.anchors import feature_sizes
from jaxdet.ops.anchors import grid_points
from jaxdet.ops.anchors import multilevel_anchors_xyxy
from jaxdet.ops.anchors import retinanet_anchors_xyxy
from jaxdet.ops.anchors import ssd_default_boxes_xyxy
from jaxdet.ops.coders import BoxCoder
from jaxdet.ops.coders import decode_ltrb
from jaxdet.ops.coders import encode_ltrb
from jaxdet.ops.matching import MatchCode
from jaxdet.ops.matching import gather_matched
from jaxdet.ops.matching import iou_matcher
from jaxdet.ops.matching import match_boxes
from jaxdet.ops.matching import sample_balanced
from jaxdet.ops.matching import ssd_matcher
from jaxdet.ops.roi_align import roi_align

# --- two-stage pooling (faster_rcnn) ---
from jaxdet.ops.multiscale_roi_align import multiscale_roi_align
from jaxdet.ops.multiscale_roi_align import roi_levels
from jaxdet.ops.roi_pool import roi_pool
