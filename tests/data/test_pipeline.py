import chex
import numpy as np
import pytest

from jaxdet.data import pipeline
from jaxdet.data import preprocess


def _batches(it, n):
  out = []
  for i, batch in enumerate(it):
    if i == n:
      break
    out.append(batch)
  return out


def _records(data_dir, split):
  import tensorflow_datasets as tfds
  src = tfds.data_source("shapes/tiny", split=split, data_dir=data_dir)
  return [src[i] for i in range(len(src))]


def _assert_equal_batches(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_train_batch_shapes_and_dtypes(tiny_data_dir):
  it = pipeline.input_pipeline("shapes/tiny", "train", batch_size=4, image_size=64, max_boxes=16,
                               train=True, seed=0, data_dir=tiny_data_dir, shard_index=0,
                               shard_count=1)
  (b,) = _batches(it, 1)
  chex.assert_shape(b["image"], (4, 64, 64, 3))
  chex.assert_type(b["image"], np.float32)
  chex.assert_shape(b["boxes"], (4, 16, 4))
  chex.assert_type(b["boxes"], np.float32)
  chex.assert_shape(b["classes"], (4, 16))
  chex.assert_type(b["classes"], np.int32)
  chex.assert_shape([b["box_mask"], b["example_mask"]], [(4, 16), (4,)])
  assert b["box_mask"].dtype == bool and b["example_mask"].all()
  chex.assert_type([b["image_id"], b["orig_size"], b["scale"]], [np.int64, np.int32, np.float32])
  chex.assert_shape([b["orig_size"], b["scale"]], [(4, 2), (4, 2)])
  boxes = b["boxes"][b["box_mask"]]
  assert np.all(boxes[:, 2:] > boxes[:, :2]) and boxes.min() >= 0 and boxes.max() <= 64
  assert np.all(b["boxes"][~b["box_mask"]] == 0)


def test_eval_at_native_size_keeps_boxes_exactly(tiny_data_dir):
  records = _records(tiny_data_dir, "validation")
  it = pipeline.input_pipeline("shapes/tiny", "validation", batch_size=3, image_size=256,
                               max_boxes=20, train=False, seed=0, data_dir=tiny_data_dir,
                               shard_index=0, shard_count=1)
  batches = list(it)
  assert len(batches) == 3  # 8 examples -> 3 batches, the last padded
  np.testing.assert_array_equal(np.concatenate([b["example_mask"] for b in batches]),
                                [True] * 8 + [False])
  i = 0
  for b in batches:
    for j in range(3):
      if not b["example_mask"][j]:
        assert not b["box_mask"][j].any()
        continue
      rec = records[i]
      i += 1
      assert b["image_id"][j] == rec["image/id"]
      np.testing.assert_array_equal(b["image"][j], preprocess.normalize_image(rec["image"]))
      bbox = np.asarray(rec["objects"]["bbox"], np.float32).reshape(-1, 4)
      expected = bbox[:, [1, 0, 3, 2]] * 256
      n = len(expected)
      np.testing.assert_array_equal(b["boxes"][j][:n], expected)
      assert b["box_mask"][j].sum() == n
      np.testing.assert_array_equal(b["scale"][j], [1, 1])
      np.testing.assert_array_equal(b["orig_size"][j], [256, 256])


def test_eval_letterbox_downscale(tiny_data_dir):
  records = _records(tiny_data_dir, "validation")
  (b,) = _batches(pipeline.input_pipeline(
      "shapes/tiny", "validation", batch_size=2, image_size=100, max_boxes=20, train=False,
      seed=0, data_dir=tiny_data_dir, shard_index=0, shard_count=1), 1)
  image, (sx, sy) = preprocess.letterbox_image(records[0]["image"], 100)
  np.testing.assert_array_equal(b["image"][0], preprocess.normalize_image(image))
  np.testing.assert_allclose(b["scale"][0], [100 / 256, 100 / 256])
  bbox = np.asarray(records[0]["objects"]["bbox"], np.float32).reshape(-1, 4)
  n = len(bbox)
  np.testing.assert_allclose(b["boxes"][0][:n] / [sx, sy, sx, sy], bbox[:, [1, 0, 3, 2]] * 256,
                             rtol=1e-5)


# A torchvision-converted model: pixels / 255, ImageNet mean/std in 0..1 units, stretch resize.
TORCHVISION_STRETCH = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
                       "value_range": 1.0, "resize": "stretch"}


def _reference_input(image_uint8, size, pre):
  """NumPy reference of the model's input: PIL bilinear stretch to S x S, then
  ``(x / 255 * value_range - mean) / std`` in float64."""
  from PIL import Image
  if image_uint8.shape[:2] != (size, size):
    image_uint8 = np.asarray(Image.fromarray(image_uint8).resize((size, size), Image.BILINEAR))
  x = image_uint8.astype(np.float64) / 255.0 * pre["value_range"]
  return (x - np.float64(pre["mean"])) / np.float64(pre["std"])


def test_eval_example_follows_the_model_preprocess():
  rng = np.random.default_rng(0)
  h, w = 50, 120  # not square: stretch differs from letterbox
  example = {"image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "image_id": np.int64(1),
             "boxes": np.array([[10, 5, 60, 45]], np.float32), "classes": np.array([2], np.int32),
             "orig_size": np.array([h, w], np.int32)}
  out = pipeline.eval_example(example, image_size=64, max_boxes=4,
                              preprocess=preprocess.settings(TORCHVISION_STRETCH))
  np.testing.assert_allclose(out["image"], _reference_input(example["image"], 64,
                                                            TORCHVISION_STRETCH),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out["scale"], [64 / w, 64 / h])
  np.testing.assert_allclose(out["boxes"][0], [10 * 64 / w, 5 * 64 / h, 60 * 64 / w, 45 * 64 / h],
                             rtol=1e-6)
  default = pipeline.eval_example(example, image_size=64, max_boxes=4)  # today's letterbox
  image, _ = preprocess.letterbox_image(example["image"], 64)
  np.testing.assert_array_equal(default["image"], preprocess.normalize_image(image))


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_batches_follow_the_model_preprocess(tiny_data_dir, train):
  records = {int(r["image/id"]): r for r in _records(tiny_data_dir, "train" if train else
                                                     "validation")}
  it = pipeline.input_pipeline("shapes/tiny", "train" if train else "validation", batch_size=4,
                               image_size=96, max_boxes=20, train=train, seed=0,
                               data_dir=tiny_data_dir, shard_index=0, shard_count=1,
                               augment="none", preprocess=TORCHVISION_STRETCH)
  (b,) = _batches(it, 1)
  for j in range(4):
    rec = records[int(b["image_id"][j])]
    want = _reference_input(rec["image"], 96, TORCHVISION_STRETCH)
    np.testing.assert_allclose(b["image"][j], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b["scale"][j], [96 / 256, 96 / 256])


def test_train_deterministic_and_seed_dependent(tiny_data_dir):
  kw = dict(batch_size=4, image_size=64, max_boxes=16, train=True, data_dir=tiny_data_dir,
            shard_index=0, shard_count=1, augment="full")
  a = _batches(pipeline.input_pipeline("shapes/tiny", "train", seed=1, **kw), 3)
  b = _batches(pipeline.input_pipeline("shapes/tiny", "train", seed=1, num_threads=1, **kw), 3)
  c = _batches(pipeline.input_pipeline("shapes/tiny", "train", seed=2, **kw), 1)
  _assert_equal_batches(a, b)
  assert not np.array_equal(a[0]["image"], c[0]["image"])


def test_resume_at_step_is_bit_identical_across_epochs(tiny_data_dir):
  kw = dict(batch_size=8, image_size=48, max_boxes=16, train=True, seed=3,
            data_dir=tiny_data_dir, shard_index=0, shard_count=1)
  full = _batches(pipeline.input_pipeline("shapes/tiny", "train", **kw), 7)  # 4 batches/epoch
  resumed = _batches(pipeline.input_pipeline("shapes/tiny", "train", start_step=3, **kw), 4)
  _assert_equal_batches(full[3:], resumed)
  # Each epoch visits every record once (augment="none" keeps ids of the main example).
  kw["augment"] = "none"
  epoch = _batches(pipeline.input_pipeline("shapes/tiny", "train", **kw), 8)
  ids0 = np.concatenate([b["image_id"] for b in epoch[:4]])
  ids1 = np.concatenate([b["image_id"] for b in epoch[4:]])
  assert len(set(ids0)) == 32 and set(ids0) == set(ids1)
  assert not np.array_equal(ids0, ids1)  # reshuffled per epoch


def test_num_epochs_bounds_the_stream(tiny_data_dir):
  it = pipeline.input_pipeline("shapes/tiny", "train", batch_size=5, image_size=32, max_boxes=16,
                               train=True, seed=0, data_dir=tiny_data_dir, num_epochs=2,
                               shard_index=0, shard_count=1, augment="none")
  assert len(list(it)) == 64 // 5  # drop_remainder for training


@pytest.mark.parametrize("train", [False, True])
def test_sharding_is_disjoint_and_covering(tiny_data_dir, train):
  split = "train" if train else "validation"
  ids = []
  for shard in range(2):
    it = pipeline.input_pipeline("shapes/tiny", split, batch_size=4, image_size=32, max_boxes=16,
                                 train=train, seed=0, data_dir=tiny_data_dir, num_epochs=1,
                                 shard_index=shard, shard_count=2, augment="none")
    batches = list(it)
    ids.append({int(i) for b in batches for i, m in zip(b["image_id"], b["example_mask"]) if m})
  assert not ids[0] & ids[1]
  assert len(ids[0] | ids[1]) == (32 if train else 8)


def test_finalize_drops_zero_area_keeps_empty_and_warns_once(monkeypatch):
  monkeypatch.setattr(pipeline, "_truncation_warned", False)
  example = {"image": np.zeros((8, 8, 3), np.uint8), "image_id": np.int64(7),
             "boxes": np.array([[1, 1, 1, 5], [0, 0, 4, 4], [2, 2, 2, 2], [1, 1, 3, np.nan]],
                               np.float32),
             "classes": np.array([0, 1, 2, 3], np.int32), "orig_size": np.array([8, 8])}
  out = pipeline._finalize(example, max_boxes=3, scale=(1, 1), example_mask=True)
  np.testing.assert_array_equal(out["box_mask"], [True, False, False])
  np.testing.assert_array_equal(out["boxes"][0], [0, 0, 4, 4])
  assert out["classes"][0] == 1
  empty = dict(example, boxes=np.zeros((0, 4), np.float32), classes=np.zeros((0,), np.int32))
  out = pipeline._finalize(empty, max_boxes=3, scale=(1, 1), example_mask=True)
  assert not out["box_mask"].any()
  many = dict(example, boxes=np.tile([[0, 0, 4, 4]], (5, 1)).astype(np.float32),
              classes=np.arange(5, dtype=np.int32))
  with pytest.warns(UserWarning, match="5 boxes > max_boxes=3"):
    out = pipeline._finalize(many, max_boxes=3, scale=(1, 1), example_mask=True)
  assert out["box_mask"].all()
  import warnings
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    pipeline._finalize(many, max_boxes=3, scale=(1, 1), example_mask=True)  # warned once


def test_bad_arguments(tiny_data_dir):
  kw = dict(batch_size=2, image_size=32, max_boxes=4, train=False, seed=0, data_dir=tiny_data_dir,
            shard_index=0, shard_count=1)
  with pytest.raises(ValueError, match="no split"):
    pipeline.input_pipeline("shapes/tiny", "nosuch", **kw)
  with pytest.raises(ValueError, match="not found"):
    pipeline.input_pipeline("no_such_dataset_xyz", "train", **kw)
  with pytest.raises(ValueError, match="batch_size"):
    pipeline.input_pipeline("shapes/tiny", "train", **dict(kw, batch_size=0))


@pytest.mark.slow
def test_worker_processes_give_the_same_batches(tiny_data_dir):
  kw = dict(batch_size=4, image_size=48, max_boxes=16, train=True, seed=5, data_dir=tiny_data_dir,
            shard_index=0, shard_count=1, augment="full")
  threads = _batches(pipeline.input_pipeline("shapes/tiny", "train", **kw), 3)
  procs = _batches(pipeline.input_pipeline("shapes/tiny", "train", worker_count=1, **kw), 3)
  _assert_equal_batches(threads, procs)


@pytest.mark.parametrize("seed", range(5))
def test_record_to_example_sanitizes_random_records(seed):
  """Random records as `tfds.testing.mock_data` makes them: inverted / NaN / out-of-range boxes,
  mismatched sequence lengths, grey or RGBA images."""
  from jaxdet.data import sources
  rng = np.random.default_rng(seed)
  h, w = rng.integers(5, 60, 2)
  channels = int(rng.choice([1, 3, 4]))
  n_box, n_lab = rng.integers(0, 12, 2)
  bbox = rng.uniform(-0.3, 1.3, (n_box, 4)).astype(np.float32)
  bbox[rng.uniform(size=bbox.shape) < 0.1] = np.nan
  record = {"image": rng.integers(0, 256, (h, w, channels), dtype=np.uint8),
            "image/id": np.int64(seed),
            "objects": {"bbox": list(bbox), "label": list(rng.integers(0, 5, n_lab)),
                        "is_crowd": list(rng.uniform(size=n_lab) < 0.2)}}
  ex = sources.record_to_example(record)
  assert ex["image"].shape == (h, w, 3) and ex["image"].dtype == np.uint8
  b = ex["boxes"]
  assert b.dtype == np.float32 and len(b) == len(ex["classes"]) <= min(n_box, n_lab)
  assert np.all(np.isfinite(b)) and np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])
  assert np.all(b >= 0) and np.all(b[:, [0, 2]] <= w) and np.all(b[:, [1, 3]] <= h)
  # Plain loop reference for which boxes survive.
  expected = []
  for j in range(min(n_box, n_lab)):
    ymin, xmin, ymax, xmax = (float(v) for v in bbox[j])
    if not np.all(np.isfinite([ymin, xmin, ymax, xmax])) or record["objects"]["is_crowd"][j]:
      continue
    x0, x1 = sorted((min(max(xmin * w, 0), w), min(max(xmax * w, 0), w)))
    y0, y1 = sorted((min(max(ymin * h, 0), h), min(max(ymax * h, 0), h)))
    if x1 > x0 and y1 > y0:
      expected.append([x0, y0, x1, y1])
  np.testing.assert_allclose(b, np.array(expected, np.float32).reshape(-1, 4), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("train", [True, False])
def test_masks_move_with_the_images(tiny_data_dir, train):
  from jaxdet.data import shapes
  kw = dict(batch_size=3, image_size=64, max_boxes=16, train=train, seed=1,
            data_dir=tiny_data_dir, shard_index=0, shard_count=1, masks=True,
            augment={"photometric": 0.0, "scale_range": (0.5, 0.8)})  # padded, fill colour kept
  (b,) = _batches(pipeline.input_pipeline("shapes/tiny", "validation", **kw), 1)
  chex.assert_shape(b["mask"], (3, 64, 64))
  chex.assert_type(b["mask"], np.int32)
  assert set(np.unique(b["mask"])) <= set(range(7)) | {255}
  if not train:  # eval: the rendered mask resized by the model's rule (nearest)
    from jaxdet.data import masks
    for i in range(3):
      *_, mask = shapes.render_split_image(int(b["image_id"][i]) % 10_000_000, split="validation",
                                           config="tiny", with_mask=True)
      np.testing.assert_array_equal(b["mask"][i], masks.mask_to_input(mask, 64, "letterbox"))
  else:  # padding only where the image is the fill value
    image = preprocess.denormalize_image(b["image"])
    assert (b["mask"] == 255).any() and np.all(image[b["mask"] == 255] == 0)
  (plain,) = _batches(pipeline.input_pipeline("shapes/tiny", "validation", **dict(kw, masks=False)),
                      1)
  assert "mask" not in plain
  if not train:  # 8 examples: the last batch's padding row is all ignore
    last = list(pipeline.input_pipeline("shapes/tiny", "validation", **kw))[-1]
    assert not last["example_mask"][-1] and (last["mask"][-1] == 255).all()
  np.testing.assert_array_equal(plain["image"], b["image"])  # masks change no other output


@pytest.mark.parametrize("preset,resize", [("ssd", "stretch"), ("mosaic", "letterbox")])
def test_augment_presets_static_and_reproducible(tiny_data_dir, preset, resize):
  kw = dict(batch_size=2, image_size=64, max_boxes=48, train=True, seed=3, data_dir=tiny_data_dir,
            augment=preset, shard_index=0, shard_count=1, preprocess={"resize": resize})
  a = _batches(pipeline.input_pipeline("shapes/tiny", "train", **kw), 2)
  _assert_equal_batches(a, _batches(pipeline.input_pipeline("shapes/tiny", "train", **kw), 2))
  _assert_equal_batches(a[1:], _batches(pipeline.input_pipeline("shapes/tiny", "train",
                                                                 start_step=1, **kw), 1))
  for b in a:
    chex.assert_shape([b["image"], b["boxes"], b["box_mask"]],
                      [(2, 64, 64, 3), (2, 48, 4), (2, 48)])
    boxes = b["boxes"][b["box_mask"]]
    assert len(boxes) and np.all(boxes[:, 2:] > boxes[:, :2])
    assert boxes.min() >= 0 and boxes.max() <= 64
    assert np.all(b["boxes"][~b["box_mask"]] == 0)


def test_eval_example_rcnn_rule_top_left_on_the_canvas_with_its_extent():
  """torchvision's rule in evaluation batches: the resized image top-left on the S x S canvas,
  zeros after normalization around it, and `image_hw` (what detections are clipped to)."""
  rcnn = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), value_range=1.0,
              resize="rcnn", interpolation="torch", min_size=48, max_size=64)
  pre = preprocess.settings(rcnn)
  h, w = 50, 120
  example = {"image": np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8),
             "image_id": np.int64(1), "boxes": np.array([[12, 5, 60, 45]], np.float32),
             "classes": np.array([2], np.int32), "orig_size": np.array([h, w], np.int32)}
  out = pipeline.eval_example(example, image_size=64, max_boxes=4, preprocess=pre)
  assert preprocess.rcnn_shape(h, w, 48, 64) == (26, 64)
  np.testing.assert_array_equal(out["image_hw"], [26, 64])
  want, _ = preprocess.network_input(example["image"], 64, pre, canvas=(64, 64))
  np.testing.assert_array_equal(out["image"], want)
  np.testing.assert_array_equal(out["image"][26:], 0.0)
  np.testing.assert_allclose(out["scale"], [64 / w, 26 / h])
  assert "image_hw" not in pipeline.eval_example(example, image_size=64, max_boxes=4)


def test_rcnn_rule_trains_at_its_scale_with_the_mean_as_padding(tiny_data_dir):
  """Training batches of an "rcnn" model: torchvision's scale (a 256 px shapes image becomes
  32 x 32 at min/max 32/48), placed in the 64 x 64 canvas, padded with the mean colour (~0
  after normalization)."""
  rcnn = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), value_range=1.0,
              resize="rcnn", interpolation="torch", min_size=32, max_size=48)
  it = pipeline.input_pipeline("shapes/tiny", "train", batch_size=2, image_size=64, max_boxes=8,
                               train=True, seed=0, data_dir=tiny_data_dir, augment="none",
                               preprocess=rcnn)
  batch = next(iter(it))
  assert batch["image"].shape == (2, 64, 64, 3)
  # 3/4 of each canvas lies outside its 32 x 32 image: the mean colour's pixels, ~0.
  padding = np.all(np.abs(batch["image"]) < 0.01, axis=-1).mean(axis=(1, 2))
  np.testing.assert_allclose(padding, 0.75, atol=0.02)
