"""Converters from user annotation formats (COCO, VOC, YOLO, KITTI) to jaxdet TFDS datasets."""
