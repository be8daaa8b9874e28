"""Tiny COCO / VOC / YOLO / KITTI datasets written in tmp dirs, imported, and read back."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from jaxdet.data import importers
from jaxdet.data.importers import common

CLASSES = ("cat", "dog", "bird")
# (file stem, (h, w), [(class, x0, y0, x1, y1, difficult_or_crowd)])
GOOD = [
    ("img_001", (40, 60), [("cat", 5, 6, 25, 30, False), ("dog", 30, 2, 58, 38, True)]),
    ("img_002", (50, 50), [("bird", 0, 0, 50, 50, False)]),
    ("img_003", (30, 70), []),
    ("img_004", (64, 48), [("dog", 10, 20, 30, 60, False), ("cat", 1, 1, 4, 5, False),
                           ("bird", 20, 3, 47, 15, False)]),
]


def _write_images(root, items, ext=".png"):
  os.makedirs(root, exist_ok=True)
  for stem, (h, w), _ in items:
    rng = np.random.default_rng(len(stem) + h)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
        os.path.join(root, stem + ext))


def _write_coco(tmp, items, ext=".png", path="instances.json"):
  images, anns = [], []
  for i, (stem, (h, w), objs) in enumerate(items):
    images.append({"id": 100 + i, "file_name": stem + ext, "height": h, "width": w})
    for c, x0, y0, x1, y1, flag in objs:
      anns.append({"id": len(anns) + 1, "image_id": 100 + i,
                   "category_id": CLASSES.index(c) + 1 if c in CLASSES else 99,
                   "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": int(flag)})
  path = os.path.join(tmp, path)
  with open(path, "w") as f:
    json.dump({"images": images, "annotations": anns,
               "categories": [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]}, f)
  return path


def _write_voc(tmp, items, ext=".png"):
  ann = os.path.join(tmp, "Annotations")
  os.makedirs(ann, exist_ok=True)
  for stem, (h, w), objs in items:
    parts = [f"<annotation><filename>{stem}{ext}</filename>"
             f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"]
    for c, x0, y0, x1, y1, flag in objs:
      parts.append(f"<object><name>{c}</name><difficult>{int(flag)}</difficult><bndbox>"
                   f"<xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax>"
                   f"</bndbox></object>")
    parts.append("</annotation>")
    with open(os.path.join(ann, stem + ".xml"), "w") as f:
      f.write("".join(parts))
  return ann


def _write_yolo(tmp, items, ext=None):  # pylint: disable=unused-argument  (found by stem)
  labels = os.path.join(tmp, "labels")
  os.makedirs(labels, exist_ok=True)
  for stem, (h, w), objs in items:
    with open(os.path.join(labels, stem + ".txt"), "w") as f:
      for c, x0, y0, x1, y1, _ in objs:
        f.write(f"{CLASSES.index(c)} {(x0 + x1) / 2 / w:.8f} {(y0 + y1) / 2 / h:.8f} "
                f"{(x1 - x0) / w:.8f} {(y1 - y0) / h:.8f}\n")
  return labels


def _write_kitti(tmp, items, ext=None):  # pylint: disable=unused-argument  (found by stem)
  labels = os.path.join(tmp, "label_2")
  os.makedirs(labels, exist_ok=True)
  for stem, _, objs in items:
    with open(os.path.join(labels, stem + ".txt"), "w") as f:
      for c, x0, y0, x1, y1, flag in objs:
        f.write(f"{'DontCare' if flag else c} 0.00 0 -1.0 {x0:.2f} {y0:.2f} {x1:.2f} {y1:.2f} "
                f"1.5 1.6 3.7 1.0 1.0 10.0 0.0\n")
  return labels


WRITERS = {"coco": _write_coco, "voc": _write_voc, "yolo": _write_yolo, "kitti": _write_kitti}


def _read_back(data_dir, name, split="train"):
  import tensorflow_datasets as tfds
  src = tfds.data_source(name, split=split, data_dir=data_dir)
  return {os.path.splitext(src[i]["image/filename"].decode())[0]: src[i] for i in range(len(src))}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_import_round_trip(tmp_path, fmt):
  images = str(tmp_path / "images")
  _write_images(images, GOOD)
  ann = WRITERS[fmt](str(tmp_path), GOOD)
  data_dir = str(tmp_path / "tfds")
  classes = list(CLASSES) if fmt in ("yolo", "kitti") else None
  report = importers.import_data(fmt, images=images, annotations=ann, name=f"my_{fmt}",
                                 data_dir=data_dir, classes=classes)
  assert report["num_examples"] == {"train": 4} and report["num_skipped"] == 0
  import tensorflow_datasets as tfds
  b = tfds.builder_from_directory(report["path"])  # readable without jaxdet's code
  names = b.info.features["objects"]["label"].names
  assert sorted(names) == sorted(CLASSES)
  records = _read_back(data_dir, f"my_{fmt}")
  for stem, (h, w), objs in GOOD:
    rec = records[stem]
    assert rec["image"].shape == (h, w, 3)
    bbox = np.asarray(rec["objects"]["bbox"], np.float64).reshape(-1, 4)
    labels = [names[int(l)] for l in np.asarray(rec["objects"]["label"]).reshape(-1)]
    crowd = np.asarray(rec["objects"]["is_crowd"], bool).reshape(-1)
    difficult = np.asarray(rec["objects"]["is_difficult"], bool).reshape(-1)
    assert len(bbox) == len(objs)
    for j, (c, x0, y0, x1, y1, flag) in enumerate(objs):
      got = bbox[j] * [h, w, h, w]
      np.testing.assert_allclose(got, [y0, x0, y1, x1], atol=1e-3)
      if fmt == "kitti" and flag:
        assert crowd[j]  # DontCare regions become crowd boxes
      else:
        assert labels[j] == c
      assert crowd[j] == (flag and fmt in ("coco", "kitti"))
      assert difficult[j] == (flag and fmt == "voc")


def _bad_items(tmp, fmt):
  """GOOD plus one bad image per kind of problem."""
  bad = [("bad_nan", (40, 40), [("cat", float("nan"), 1, 10, 10, False)]),
         ("bad_outside", (40, 40), [("cat", 45, 5, 80, 30, False)]),  # entirely outside
         ("bad_class", (40, 40), [("zebra", 5, 5, 20, 20, False)])]
  if fmt == "yolo":
    bad = bad[:2]  # YOLO has class ids: an out-of-range id is the unknown class
    bad.append(("bad_class", (40, 40), []))
  return bad


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_bad_data_skip_and_fail(tmp_path, fmt):
  images = str(tmp_path / "images")
  bad = _bad_items(str(tmp_path), fmt)
  _write_images(images, GOOD + bad)
  ann = WRITERS[fmt](str(tmp_path), GOOD + bad)
  if fmt == "yolo":
    with open(os.path.join(ann, "bad_class.txt"), "w") as f:
      f.write("7 0.5 0.5 0.2 0.2\n")
  # A corrupt image file.
  with open(os.path.join(images, "img_002.png"), "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n not really a png")
  kw = dict(images=images, annotations=ann, data_dir=str(tmp_path / "tfds"), classes=list(CLASSES))
  messages = []
  report = importers.import_data(fmt, name=f"skip_{fmt}", on_error="skip", log=messages.append,
                                 **kw)
  assert report["num_skipped"] == 4 and report["num_examples"] == {"train": 3}
  joined = "\n".join(messages)
  for stem in ("img_002", "bad_nan", "bad_outside", "bad_class"):
    assert stem in joined, f"no message names {stem}: {joined}"
  assert "unknown class" in joined and "outside" in joined and "cannot read image" in joined
  assert "non-finite" in joined or "nan" in joined.lower()
  with pytest.raises(common.DataImportError, match="img_002|bad_"):
    importers.import_data(fmt, name=f"fail_{fmt}", on_error="fail", **kw)


def test_split_ratios_and_arguments(tmp_path):
  items = [(f"im{i:03d}", (20, 20), [("cat", 1, 1, 10, 10, False)]) for i in range(20)]
  images = str(tmp_path / "images")
  _write_images(images, items)
  ann = _write_coco(str(tmp_path), items)
  report = importers.import_data("coco", images=images, annotations=ann, name="ratios",
                                 data_dir=str(tmp_path / "tfds"), split_ratios=(0.8, 0.1, 0.1))
  assert report["num_examples"] == {"train": 16, "validation": 2, "test": 2}
  assert common.assign_splits(5, split="val") == ["val"] * 5
  with pytest.raises(common.DataImportError, match="split-ratios"):
    common.parse_split_ratios("0.8,abc")
  with pytest.raises(common.DataImportError, match="name"):
    importers.import_data("coco", images=images, annotations=ann, name="Bad-Name",
                          data_dir=str(tmp_path / "tfds"))
  with pytest.raises(common.DataImportError, match="unknown format"):
    importers.import_data("csv", images=images, annotations=ann, name="x", data_dir=str(tmp_path))
  with open(tmp_path / "broken.json", "w") as f:
    f.write("{not json")
  with pytest.raises(common.DataImportError, match="broken.json"):
    importers.import_data("coco", images=images, annotations=str(tmp_path / "broken.json"),
                          name="x", data_dir=str(tmp_path))


def test_imported_dataset_through_pipeline(tmp_path):
  from jaxdet.data import pipeline
  images = str(tmp_path / "images")
  _write_images(images, GOOD)
  ann = _write_voc(str(tmp_path), GOOD)
  data_dir = str(tmp_path / "tfds")
  importers.import_data("voc", images=images, annotations=ann, name="voc_pipe", data_dir=data_dir)
  batches = list(pipeline.input_pipeline("voc_pipe", "train", batch_size=3, image_size=64,
                                         max_boxes=5, train=False, seed=0, data_dir=data_dir,
                                         shard_index=0, shard_count=1))
  assert len(batches) == 2
  records = _read_back(data_dir, "voc_pipe")
  by_id = {int(r["image/id"]): (stem, r) for stem, r in records.items()}
  for b in batches:
    for j in np.nonzero(b["example_mask"])[0]:
      stem, _ = by_id[int(b["image_id"][j])]
      (h, w), objs = next((s, o) for st, s, o in GOOD if st == stem)
      np.testing.assert_array_equal(b["orig_size"][j], [h, w])
      n = int(b["box_mask"][j].sum())
      assert n == len(objs)
      orig = b["boxes"][j][:n] / np.tile(b["scale"][j], 2)
      np.testing.assert_allclose(orig, np.array([o[1:5] for o in objs], float).reshape(-1, 4),
                                 atol=1e-3)


def test_import_without_importlib_resources_backport(tmp_path, monkeypatch):
  # A fresh install of TFDS 4.9 does not pull the backport that its builder lazily imports.
  import sys
  monkeypatch.setitem(sys.modules, "importlib_resources", None)
  images = str(tmp_path / "images")
  _write_images(images, GOOD[:1])
  ann = _write_coco(str(tmp_path), GOOD[:1])
  report = importers.import_data("coco", images=images, annotations=ann, name="no_backport",
                                 data_dir=str(tmp_path / "tfds"))
  assert report["num_examples"] == {"train": 1}


def _import(fmt, tmp_path, items, *, name, ext=".png", **kw):
  ann = WRITERS[fmt](str(tmp_path), items, ext=ext)
  kw.setdefault("classes", list(CLASSES) if fmt in ("yolo", "kitti") else None)
  return importers.import_data(fmt, images=str(tmp_path / "images"), annotations=ann, name=name,
                               data_dir=str(tmp_path / "tfds"), **kw)


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_exif_orientation_annotations_on_displayed_image(tmp_path, fmt):
  # A phone photo: stored 32x48 (h x w) with EXIF Orientation=6, displayed 48x32; annotated as
  # displayed. The box's y range (30..46) lies outside the stored height.
  displayed = np.zeros((48, 32, 3), np.uint8)
  displayed[30:46, 4:20] = 255
  os.makedirs(tmp_path / "images")
  exif = Image.Exif()
  exif[0x0112] = 6  # rotate 90 degrees clockwise to display
  Image.fromarray(np.rot90(displayed)).save(tmp_path / "images" / "phone.jpg", quality=95,
                                             exif=exif)
  items = [("phone", (48, 32), [("cat", 4, 30, 20, 46, False)])]
  report = _import(fmt, tmp_path, items, name=f"exif_{fmt}", ext=".jpg", on_error="fail")
  assert report["num_examples"] == {"train": 1}
  rec = _read_back(str(tmp_path / "tfds"), f"exif_{fmt}")["phone"]
  assert rec["image"].shape == (48, 32, 3)
  np.testing.assert_allclose(np.asarray(rec["objects"]["bbox"]).reshape(4) * [48, 32, 48, 32],
                             [30, 4, 46, 20], atol=1e-3)
  assert rec["image"][31:45, 5:19].mean() > 200 and rec["image"][:28].mean() < 30


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_box_partly_outside_is_clipped_and_counted(tmp_path, fmt):
  items = GOOD + [("partly", (40, 40), [("cat", 30, -5, 52, 20, False),
                                        ("dog", 2, 2, 9, 9, False)])]
  _write_images(str(tmp_path / "images"), items)
  messages = []
  report = _import(fmt, tmp_path, items, name=f"clip_{fmt}", log=messages.append)
  assert report["num_skipped"] == 0 and report["num_clipped"] == 1, messages
  bbox = np.asarray(_read_back(str(tmp_path / "tfds"), f"clip_{fmt}")["partly"]["objects"]["bbox"])
  np.testing.assert_allclose(bbox.reshape(-1, 4)[0] * 40, [0, 30, 20, 40], atol=1e-3)


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_annotation_without_image_is_reported(tmp_path, fmt):
  _write_images(str(tmp_path / "images"), GOOD)
  items = GOOD + [("ghost", (40, 40), [("cat", 1, 1, 9, 9, False)])]  # no ghost image
  messages = []
  report = _import(fmt, tmp_path, items, name=f"ghost_{fmt}", log=messages.append)
  assert report["num_skipped"] == 1 and report["num_examples"] == {"train": 4}
  assert len(messages) == 1 and "ghost" in messages[0], messages
  assert messages[0].count(str(tmp_path / "images" / "ghost")) == (fmt in ("coco", "voc")), messages
  with pytest.raises(common.DataImportError, match="ghost"):
    _import(fmt, tmp_path, items, name=f"ghost_fail_{fmt}", on_error="fail")
  assert not os.path.exists(tmp_path / "tfds" / f"ghost_fail_{fmt}")


def test_coco_annotation_with_unknown_image_id_is_reported(tmp_path):
  _write_images(str(tmp_path / "images"), GOOD)
  ann = _write_coco(str(tmp_path), GOOD)
  with open(ann) as f:
    data = json.load(f)
  data["annotations"].append({"id": 77, "image_id": 999, "category_id": 1, "bbox": [1, 1, 2, 2]})
  with open(ann, "w") as f:
    json.dump(data, f)
  messages = []
  report = importers.import_data("coco", images=str(tmp_path / "images"), annotations=ann,
                                 name="orphan", data_dir=str(tmp_path / "tfds"),
                                 log=messages.append)
  assert report["num_skipped"] == 1 and "999" in messages[0] and "77" in messages[0]


def _kitti_line(name, box):
  x0, y0, x1, y1 = box
  return f"{name} 0.00 0 -1.0 {x0:.2f} {y0:.2f} {x1:.2f} {y1:.2f} 1.5 1.6 3.7 1 1 10 0\n"


def test_kitti_type_names_with_spaces_and_field_count(tmp_path):
  items = [("a", (40, 40), []), ("b", (40, 40), []), ("c", (40, 40), [])]
  _write_images(str(tmp_path / "images"), items)
  labels = tmp_path / "label_2"
  labels.mkdir()
  (labels / "a.txt").write_text(_kitti_line("coffee cup", (2, 3, 20, 30)) +
                                _kitti_line("cat", (1, 1, 5, 5)))
  (labels / "b.txt").write_text(_kitti_line("cat", (1, 1, 5, 5)) +
                                _kitti_line("cat", (1, 1, 5, 5)).strip() + " 0.93\n")  # score
  (labels / "c.txt").write_text("cat 0.00 0 -1.0 1 1 5 5\n")  # 8 fields only
  messages = []
  report = importers.import_data("kitti", images=str(tmp_path / "images"),
                                 annotations=str(labels), name="spaces",
                                 data_dir=str(tmp_path / "tfds"), log=messages.append)
  assert report["num_examples"] == {"train": 1} and report["num_skipped"] == 2
  assert any("b.txt:2:" in m and "15 trailing number" in m for m in messages), messages
  assert any("c.txt:1:" in m and "7 trailing number" in m for m in messages), messages
  import tensorflow_datasets as tfds
  b = tfds.builder_from_directory(report["path"])
  names = b.info.features["objects"]["label"].names
  assert names == ["cat", "coffee cup"]
  rec = _read_back(str(tmp_path / "tfds"), "spaces")["a"]
  assert [names[i] for i in rec["objects"]["label"]] == ["coffee cup", "cat"]
  np.testing.assert_allclose(rec["objects"]["bbox"][0] * 40, [3, 2, 30, 20], atol=1e-3)


def _split_items(prefix, n):
  return [(f"{prefix}{i}", (30, 30), [("cat", 1, 1, 10, 10, False)]) for i in range(n)]


def test_coco_already_split(tmp_path):
  train, val = _split_items("t", 3), _split_items("v", 2)
  _write_images(str(tmp_path / "images" / "train2017"), train)
  _write_images(str(tmp_path / "images" / "val2017"), val)
  ann = tmp_path / "annotations"
  ann.mkdir()
  _write_coco(str(ann), train, path="instances_train2017.json")
  _write_coco(str(ann), val, path="instances_val2017.json")  # same image ids as train: renumbered
  report = importers.import_data("coco", images=str(tmp_path / "images"), annotations=str(ann),
                                 name="coco_split", data_dir=str(tmp_path / "tfds"),
                                 on_error="fail")
  assert report["num_examples"] == {"train": 3, "validation": 2}
  assert sorted(_read_back(str(tmp_path / "tfds"), "coco_split", "validation")) == ["v0", "v1"]
  with pytest.raises(common.DataImportError, match="already split.*--split-ratios"):
    importers.import_data("coco", images=str(tmp_path / "images"), annotations=str(ann),
                          name="coco_split2", data_dir=str(tmp_path / "tfds"),
                          split_ratios=(0.5, 0.5))


def test_coco_roboflow_split_folders(tmp_path):
  for split, items in (("train", _split_items("t", 2)), ("valid", _split_items("v", 1))):
    _write_images(str(tmp_path / "export" / split), items)
    _write_coco(str(tmp_path / "export" / split), items, path="_annotations.coco.json")
  report = importers.import_data("coco", images=str(tmp_path / "export"),
                                 annotations=str(tmp_path / "export"), name="robo",
                                 data_dir=str(tmp_path / "tfds"), on_error="fail")
  assert report["num_examples"] == {"train": 2, "validation": 1}


def test_voc_image_sets(tmp_path):
  items = _split_items("2008_00000", 5)
  _write_images(str(tmp_path / "JPEGImages"), items)
  ann = _write_voc(str(tmp_path), items)
  main = tmp_path / "ImageSets" / "Main"
  main.mkdir(parents=True)
  (main / "train.txt").write_text("2008_000000\n2008_000001\n2008_000002\n")
  (main / "val.txt").write_text("2008_000003\n2008_000009\n")  # 9 has no xml; 4 is unlisted
  (main / "cat_train.txt").write_text("2008_000000  1\n")  # per-class lists are ignored
  messages = []
  report = importers.import_data("voc", images=str(tmp_path / "JPEGImages"), annotations=ann,
                                 name="voc_split", data_dir=str(tmp_path / "tfds"),
                                 log=messages.append)
  assert report["num_examples"] == {"train": 3, "validation": 1} and report["num_skipped"] == 2
  joined = "\n".join(messages)
  assert "2008_000004.xml: not listed" in joined and "2008_000009" in joined


@pytest.mark.parametrize("roboflow", [False, True])
def test_yolo_split_folders(tmp_path, roboflow):
  train, val = _split_items("t", 3), _split_items("v", 2)
  for split, items in (("train", train), ("val", val)):
    if roboflow:  # train/images + train/labels
      _write_images(str(tmp_path / "ds" / split / "images"), items)
      os.rename(_write_yolo(str(tmp_path / "ds" / split), items),
                tmp_path / "ds" / split / "labels")
    else:  # Ultralytics: images/train + labels/train
      _write_images(str(tmp_path / "ds" / "images" / split), items)
      os.makedirs(tmp_path / "ds" / "labels", exist_ok=True)
      os.rename(_write_yolo(str(tmp_path / "tmp" / split), items),
                tmp_path / "ds" / "labels" / split)
  (tmp_path / "ds" / ("" if roboflow else "labels") / "classes.txt").write_text("\n".join(CLASSES))
  images, labels = ((tmp_path / "ds", tmp_path / "ds") if roboflow else
                    (tmp_path / "ds" / "images", tmp_path / "ds" / "labels"))
  report = importers.import_data("yolo", images=str(images), annotations=str(labels),
                                 name="yolo_split", data_dir=str(tmp_path / "tfds"),
                                 on_error="fail")
  assert report["num_examples"] == {"train": 3, "validation": 2}
  rec = _read_back(str(tmp_path / "tfds"), "yolo_split", "validation")["v1"]
  np.testing.assert_allclose(rec["objects"]["bbox"][0] * 30, [1, 1, 10, 10], atol=1e-3)


def test_overwrite(tmp_path):
  _write_images(str(tmp_path / "images"), GOOD)
  _import("coco", tmp_path, GOOD, name="again")
  with pytest.raises(common.DataImportError) as e:
    _import("coco", tmp_path, GOOD[:2], name="again")
  assert "already exists" in str(e.value) and "--overwrite" in str(e.value)
  assert "\n" not in str(e.value)
  report = _import("coco", tmp_path, GOOD[:2], name="again", overwrite=True)
  assert report["num_examples"] == {"train": 2}
  assert sorted(_read_back(str(tmp_path / "tfds"), "again")) == ["img_001", "img_002"]
  assert sorted(os.listdir(tmp_path / "tfds")) == ["again"]  # no temporary folder left
  with pytest.raises(common.DataImportError, match="no valid"):  # a failed overwrite keeps it
    _import("coco", tmp_path, [("nope", (9, 9), [])], name="again", overwrite=True)
  assert sorted(_read_back(str(tmp_path / "tfds"), "again")) == ["img_001", "img_002"]


@pytest.mark.parametrize("text,needle", [
    ("0.8,0.3", "sum to 1"), ("-0.2,1.2", "between 0 and 1"), ("0.5,0.2,0.2,0.1", "1 to 3"),
    ("0,1", "train ratio"), ("0.8,abc", "numbers"), ("nan", "between 0 and 1")])
def test_invalid_split_ratios(text, needle):
  with pytest.raises(common.DataImportError, match=needle) as e:
    common.parse_split_ratios(text)
  assert text in str(e.value)


def test_invalid_split_ratios_in_api(tmp_path):
  _write_images(str(tmp_path / "images"), GOOD)
  with pytest.raises(common.DataImportError, match="sum to 1"):
    _import("coco", tmp_path, GOOD, name="bad_ratios", split_ratios=(0.8, 0.3))


@pytest.mark.parametrize("names", ["[cat, dog, bird]", "{0: cat, 1: dog, 2: bird}"])
def test_yolo_data_yaml(tmp_path, names):
  train, val = _split_items("t", 3), _split_items("v", 2)
  root = tmp_path / "ds"
  _write_images(str(root / "images" / "train"), train)
  os.makedirs(root / "labels")
  os.rename(_write_yolo(str(tmp_path / "a"), train), root / "labels" / "train")
  _write_images(str(root / "extra" / "images"), val)  # val given as a list file
  os.rename(_write_yolo(str(tmp_path / "b"), val), root / "extra" / "labels")
  (root / "extra" / "labels" / "lost.txt").write_text("0 0.5 0.5 0.2 0.2\n")  # no lost.png
  (root / "val.txt").write_text("extra/images/v0.png\n./extra/images/v1.png\n")
  (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nval: val.txt\nnames: {names}\n")
  messages = []
  report = importers.import_data("yolo", images=str(root), annotations=str(root / "data.yaml"),
                                 name="yolo_yaml", data_dir=str(tmp_path / "tfds"),
                                 log=messages.append)
  assert report["num_examples"] == {"train": 3, "validation": 2} and report["num_skipped"] == 1
  assert "lost.txt: label file without an image" in messages[0]
  import tensorflow_datasets as tfds
  assert tfds.builder_from_directory(report["path"]).info.features["objects"][
      "label"].names == list(CLASSES)


def test_coco_folder_with_extra_and_single_files(tmp_path):
  train, val = _split_items("t", 2), _split_items("v", 1)
  _write_images(str(tmp_path / "images"), train + val)
  ann = tmp_path / "annotations"
  ann.mkdir()
  _write_coco(str(ann), train, path="instances_train2017.json")
  _write_coco(str(ann), val, path="instances_val2017.json")
  (ann / "captions_train2017.json").write_text("{}")  # COCO's folder holds these too
  kw = dict(images=str(tmp_path / "images"), data_dir=str(tmp_path / "tfds"), on_error="fail")
  report = importers.import_data("coco", annotations=str(ann), name="coco_dir", **kw)
  assert report["num_examples"] == {"train": 2, "validation": 1}
  single = tmp_path / "cvat"
  single.mkdir()
  _write_coco(str(single), train + val, path="instances_default.json")
  report = importers.import_data("coco", annotations=str(single), name="cvat", **kw)
  assert report["num_examples"] == {"train": 3}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_missing_images_folder_is_one_error(tmp_path, fmt):
  """A mistyped --images gave one 'image file not found' line per image, then 'no valid
  examples'."""
  _write_images(str(tmp_path / "images"), GOOD)
  ann = WRITERS[fmt](str(tmp_path), GOOD, ".png")
  messages = []
  with pytest.raises(common.DataImportError, match=r"typo.*(no images found)|not found: .*typo"):
    importers.import_data(fmt, images=str(tmp_path / "typo"), annotations=ann, name="typo",
                          data_dir=str(tmp_path / "tfds"), log=messages.append)
  assert messages == [] and not os.path.exists(tmp_path / "tfds" / "typo")


def test_report_lists_splits_in_train_validation_test_order(tmp_path):
  """The summary printed {'validation': 6, 'train': 22} when the first image was a val one."""
  items = _split_items("a", 3)
  _write_images(str(tmp_path / "JPEGImages"), items)
  ann = _write_voc(str(tmp_path), items)
  main = tmp_path / "ImageSets" / "Main"
  main.mkdir(parents=True)
  (main / "val.txt").write_text(f"{items[0][0]}\n")
  (main / "train.txt").write_text(f"{items[1][0]}\n{items[2][0]}\n")
  report = importers.import_data("voc", images=str(tmp_path / "JPEGImages"), annotations=ann,
                                 name="order", data_dir=str(tmp_path / "tfds"))
  assert list(report["num_examples"].items()) == [("train", 2), ("validation", 1)]


def test_a_split_without_boxes_is_imported_with_a_warning(tmp_path):
  """Such a split trained silently to AP=-1; now the import warns (and `jaxdet train` refuses)."""
  items = GOOD[:3]  # img_003 has no box
  _write_images(str(tmp_path / "JPEGImages"), items)
  ann = _write_voc(str(tmp_path), items)
  main = tmp_path / "ImageSets" / "Main"
  main.mkdir(parents=True)
  (main / "train.txt").write_text("img_001\nimg_002\n")
  (main / "val.txt").write_text("img_003\n")
  messages = []
  with pytest.warns(UserWarning, match=r"the imported dataset 'nobox' has no boxes in split "
                                       r"'validation' \(1 images\): a detector can neither learn "
                                       r"from nor be evaluated on it"):
    report = importers.import_data("voc", images=str(tmp_path / "JPEGImages"), annotations=ann,
                                   name="nobox", data_dir=str(tmp_path / "tfds"),
                                   log=messages.append)
  assert report["num_boxes"] == {"train": 3, "validation": 0}
  assert [m for m in messages if m.startswith("warning: ")] == [
      "warning: the imported dataset 'nobox' has no boxes in split 'validation' (1 images): a "
      "detector can neither learn from nor be evaluated on it"]


def _palette_png(path, values):
  """A VOC-style palette PNG whose indices are ``values``."""
  from jaxdet.data import draw
  im = Image.fromarray(np.asarray(values, np.uint8), mode="P")
  im.putpalette(draw.MASK_PALETTE.reshape(-1).tolist())
  im.save(path)


def _read_masks(data_dir, name):
  return {stem: np.asarray(r["segmentation/mask"])[..., 0]
          for stem, r in _read_back(data_dir, name).items()}


def test_voc_segmentation_class_masks(tmp_path):
  items = GOOD[:3]
  images = str(tmp_path / "images")
  _write_images(images, items)
  ann = _write_voc(str(tmp_path), items + [("no_mask", (20, 20), [])])
  _write_images(images, [("no_mask", (20, 20), [])])
  seg = tmp_path / "SegmentationClass"
  seg.mkdir()
  expected = {}
  for k, (stem, (h, w), _) in enumerate(items):
    values = np.random.default_rng(k).integers(0, 4, (h, w))  # ids 0..3 = background + 3 classes
    values[0, :3] = 255  # VOC boundary
    if k == 0:
      values[1, :5] = [4, 9, 21, 200, 254]  # outside 0..3 and 255: ignored and counted
    expected[stem] = np.where(values > 3, 255, values)
    _palette_png(seg / f"{stem}.png", values if k != 2 else values[:-1])  # last: wrong size
  data_dir = str(tmp_path / "tfds")
  messages = []
  with pytest.warns(UserWarning, match="5 mask pixel.* in 1 image"):
    report = importers.import_data("voc", images=images, annotations=ann, name="voc_seg",
                                   data_dir=data_dir, masks=True, log=messages.append)
  assert report["num_mask_out_of_range"] == 5 and report["num_examples"] == {"train": 2}
  joined = "\n".join(messages)
  assert "no_mask" in joined and "img_003.png: mask of size 70x29 (w x h)" in joined
  got = _read_masks(data_dir, "voc_seg")
  assert sorted(got) == ["img_001", "img_002"]
  for stem, mask in got.items():
    np.testing.assert_array_equal(mask, expected[stem])
  # ImageSets/Segmentation: its lists give the splits; unlisted images are not read (no message).
  sets = tmp_path / "ImageSets" / "Segmentation"
  sets.mkdir(parents=True)
  (sets / "train.txt").write_text("img_001\n")
  (sets / "val.txt").write_text("img_002\n")
  messages.clear()
  with pytest.warns(UserWarning, match="5 mask pixel"):
    report = importers.import_data("voc", images=images, annotations=ann, name="voc_seg_sets",
                                   data_dir=data_dir, masks=True, log=messages.append)
  assert report["num_examples"] == {"train": 1, "validation": 1} and report["num_skipped"] == 0
  np.testing.assert_array_equal(_read_masks(data_dir, "voc_seg_sets")["img_001"],
                                expected["img_001"])


def test_coco_polygons_and_rle_rasterized(tmp_path):
  mask_utils = pytest.importorskip("pycocotools.mask")
  h, w = 30, 40
  images = str(tmp_path / "images")
  _write_images(images, [("a", (h, w), [])])
  dog = np.zeros((h, w), np.uint8)
  dog[2:12, 20:38] = 1
  crowd = np.zeros((h, w), np.uint8)
  crowd[20:28, 30:40] = 1
  rle = mask_utils.encode(np.asfortranarray(dog))
  rle["counts"] = rle["counts"].decode()
  anns = [
      {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 14, 20], "iscrowd": 0,
       "segmentation": [[2, 2, 16, 2, 16, 22, 2, 22]]},  # cat: polygon
      {"id": 2, "image_id": 1, "category_id": 2, "bbox": [20, 2, 18, 10], "iscrowd": 0,
       "segmentation": rle},  # dog: compressed RLE
      {"id": 3, "image_id": 1, "category_id": 3, "bbox": [10, 15, 10, 5], "iscrowd": 0,
       "segmentation": [[10, 15, 20, 15, 20, 20, 10, 20]]},  # bird, overlaps the cat
  ]
  uncompressed = []  # crowd as uncompressed RLE (column-major run lengths, from background)
  run, value = 0, 0
  for v in crowd.reshape(-1, order="F"):
    if v != value:
      uncompressed.append(run)
      run, value = 0, v
    run += 1
  uncompressed.append(run)
  anns.append({"id": 4, "image_id": 1, "category_id": 1, "bbox": [30, 20, 10, 8], "iscrowd": 1,
               "segmentation": {"size": [h, w], "counts": uncompressed}})
  ann = tmp_path / "instances.json"
  ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "height": h, "width": w}],
                             "annotations": anns,
                             "categories": [{"id": i + 1, "name": c}
                                            for i, c in enumerate(CLASSES)]}))
  data_dir = str(tmp_path / "tfds")
  importers.import_data("coco", images=images, annotations=str(ann), name="coco_seg",
                        data_dir=data_dir, masks=True)
  mask = _read_masks(data_dir, "coco_seg")["a"]
  np.testing.assert_array_equal(mask[2:12, 20:38], 2)  # dog (RLE: exact)
  assert (mask[5:14, 4:9] == 1).all()  # inside the cat polygon, away from the bird
  assert (mask[16:19, 11:15] == 255).all()  # cat and bird overlap: ignored
  assert (mask[16:19, 17:19] == 3).all()  # bird only
  np.testing.assert_array_equal(mask[crowd == 1], 255)  # crowd: ignored
  assert (mask[:, :1] == 0).all() and (mask[25:, :25] == 0).all()


def test_masks_missing_or_unsupported_are_clear_errors(tmp_path):
  from jaxdet.data import pipeline
  images = str(tmp_path / "images")
  _write_images(images, GOOD[:1])
  ann = _write_coco(str(tmp_path), GOOD[:1])
  data_dir = str(tmp_path / "tfds")
  importers.import_data("coco", images=images, annotations=ann, name="boxes_only",
                        data_dir=data_dir)
  with pytest.raises(ValueError, match="'boxes_only'.*no 'segmentation/mask' feature"):
    pipeline.input_pipeline("boxes_only", "train", batch_size=1, image_size=32, max_boxes=4,
                            train=False, seed=0, data_dir=data_dir, shard_index=0, shard_count=1,
                            masks=True)
  with pytest.raises(common.DataImportError, match="--masks works with --format voc or coco"):
    importers.import_data("yolo", images=images, annotations=str(tmp_path), name="y",
                          data_dir=data_dir, masks=True)
  with pytest.raises(common.DataImportError, match="no SegmentationClass folder"):
    importers.import_data("voc", images=images, annotations=_write_voc(str(tmp_path), GOOD[:1]),
                          name="v", data_dir=data_dir, masks=True)
