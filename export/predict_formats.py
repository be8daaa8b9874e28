"""`jaxdet predict --format`: COCO results JSON and YOLO txt lines from detections."""

import json
import pathlib


def coco_results(records: list[dict], category_ids: list[int]) -> list[dict]:
  """COCO results (what `jaxdet evaluate --detections` and pycocotools `loadRes` read).

  Args:
    records: detections.json records (`image_id`, `detections` with `box_xyxy`, `score`,
      `class_id`).
    category_ids: COCO category id of each class id.

  Returns:
    list of `{image_id, category_id, bbox [x, y, w, h] pixels, score}`.
  """
  out = []
  for record in records:
    for d in record["detections"]:
      x0, y0, x1, y1 = d["box_xyxy"]
      out.append({"image_id": int(record["image_id"]),
                  "category_id": int(category_ids[d["class_id"]]),
                  "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                  "score": round(float(d["score"]), 5)})
  return out


def yolo_lines(record: dict) -> str:
  """One image's detections as YOLO txt: `class cx cy w h score`, coordinates in [0, 1]
  (Ultralytics `save_txt` with `save_conf`)."""
  w, h = record["width"], record["height"]
  lines = []
  for d in record["detections"]:
    x0, y0, x1, y1 = d["box_xyxy"]
    lines.append(f"{d['class_id']} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} "
                 f"{(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f} {d['score']:.5f}")
  return "".join(line + "\n" for line in lines)


def coco_ids_from_ground_truth(gt_path, names: list[str], class_names) -> tuple[list, list]:
  """Image and category ids of a COCO annotation file, for results it can be evaluated against.

  Images are matched on `file_name`: the input's name relative to the inputs' common folder
  (`a/x.jpg`), else its base name when that is unique in the file. Categories are matched on
  name, else (when no name matches) by order: class i -> the i-th smallest category id, as
  `jaxdet data import --format coco` assigns class ids.

  Args:
    gt_path: COCO annotation JSON.
    names: the inputs' relative names.
    class_names: the model's class names.

  Returns:
    `(image_ids, category_ids)`: one id (None when not found) per name; one id per class.

  Raises:
    ValueError: the file is not COCO annotations, or its categories do not fit the model.
  """
  data = json.loads(pathlib.Path(gt_path).read_text())
  if not isinstance(data, dict) or "images" not in data or "categories" not in data:
    raise ValueError(f"--coco-gt {gt_path}: not a COCO annotation file (needs images and "
                     f"categories)")
  by_name, by_base = {}, {}
  for im in data["images"]:
    file_name = str(im["file_name"]).replace("\\", "/")
    by_name[file_name] = int(im["id"])
    by_base.setdefault(file_name.rsplit("/", 1)[-1], []).append(int(im["id"]))
  image_ids = []
  for name in names:
    base = by_base.get(name.rsplit("/", 1)[-1], [])
    image_ids.append(by_name.get(name, base[0] if len(base) == 1 else None))
  cats = sorted((int(c["id"]), str(c.get("name", c["id"]))) for c in data["categories"])
  ids_by_name = {n: i for i, n in cats}
  if all(n in ids_by_name for n in class_names):
    return image_ids, [ids_by_name[n] for n in class_names]
  if len(cats) != len(class_names):
    raise ValueError(f"--coco-gt {gt_path}: its {len(cats)} categories do not match the "
                     f"model's {len(class_names)} classes {list(class_names)}")
  return image_ids, [i for i, _ in cats]
