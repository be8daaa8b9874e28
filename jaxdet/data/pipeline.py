"""``input_pipeline``: TFDS (ArrayRecord, random access) -> grain -> static-shape NumPy batches.

Every batch is a pure function of (seed, batch index): example ``g`` of the stream reads record
``perm_epoch(g)[g % n]`` and augments it with ``np.random.default_rng([seed, g])``, so resuming at
``start_step`` gives bit-identical batches, and thread/process parallelism never changes results.
"""

import dataclasses
import functools
import sys
import warnings

import numpy as np

from jaxdet.data import augment as augment_lib
from jaxdet.data import masks as masks_lib
from jaxdet.data import preprocess as preprocess_lib
from jaxdet.data import proposals as proposals_lib
from jaxdet.data import sources
from jaxdet.data import tfds_maps

_truncation_warned = False


class _Records:
  """Lazily opened, picklable random-access view of one split (decoded NumPy examples).

  Worker processes reopen the exact prepared directory (``builder_from_directory``), so they
  never build, download or depend on dataset registration.
  """

  def __init__(self, dataset, split, data_dir, masks=False):
    self.dataset, self.split, self.masks = dataset, split, masks
    self._source, b = sources.open_split(dataset, split, data_dir, decode_mask=masks)
    if masks:
      sources.require_masks(b, dataset)
    self.path = str(b.data_dir)
    self.size = len(self._source)

  def __getstate__(self):
    return dict(self.__dict__, _source=None)

  def __len__(self):
    return self.size

  def __getitem__(self, index):
    if self._source is None:
      import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
      b = tfds.builder_from_directory(self.path)
      self._source = b.as_data_source(split=self.split,
                                      decoders=sources.decoders(b, decode_mask=self.masks))
    record = tfds_maps.to_jaxdet_record(self._source[int(index)], int(index))
    return sources.record_to_example(record, masks=self.masks)


class _WithProposals:
  """Records with ``proposals`` ``[p, 4]`` float32 (original pixels, p <= max_proposals) joined
  by image id from a proposals file (``jaxdet.data.proposals``)."""

  def __init__(self, records, path, max_proposals):
    self.records, self.path, self.max_proposals = records, str(path), max_proposals
    self.table = proposals_lib.load_proposals(path)

  def __len__(self):
    return len(self.records)

  def __getitem__(self, index):
    example = self.records[index]
    return dict(example, proposals=proposals_lib.lookup(
        self.table, example["image_id"], self.max_proposals, path=self.path))


def _pad_proposals(proposals, max_proposals):
  """``(proposals [P, 4] float32, proposal_mask [P] bool)``: padded to P = ``max_proposals``;
  degenerate (e.g. cropped away) or non-finite rows are masked, never moved."""
  p = np.asarray(proposals, np.float32).reshape(-1, 4)[:max_proposals]
  out = np.zeros((max_proposals, 4), np.float32)
  out[:len(p)] = p
  valid = np.all(np.isfinite(p), 1) & (p[:, 2] > p[:, 0]) & (p[:, 3] > p[:, 1])
  return out, np.pad(valid, (0, max_proposals - len(p)))


def _finalize(example, *, max_boxes, scale, example_mask, preprocess=preprocess_lib.DEFAULT,
              max_proposals=0, image_hw=None):
  """Drops zero-area boxes, pads/truncates to ``max_boxes`` and normalizes the image (by the
  model's ``preprocess``; a float32 image is already normalized); with ``max_proposals``, pads
  the example's ``proposals``; ``image_hw`` (the image's extent in the canvas) is passed on."""
  global _truncation_warned
  boxes = np.asarray(example["boxes"], np.float32).reshape(-1, 4)
  classes = np.asarray(example["classes"], np.int32).reshape(-1)
  keep = np.all(np.isfinite(boxes), 1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
  boxes, classes = boxes[keep], classes[keep]
  n = len(boxes)
  if n > max_boxes:
    if not _truncation_warned:
      _truncation_warned = True
      msg = (f"image {int(example['image_id'])} has {n} boxes > max_boxes={max_boxes}; keeping "
             f"the first {max_boxes} (warned once; raise max_boxes to keep all)")
      warnings.warn(msg, stacklevel=2)
    n = max_boxes
  padded_boxes = np.zeros((max_boxes, 4), np.float32)
  padded_classes = np.zeros((max_boxes,), np.int32)
  padded_boxes[:n], padded_classes[:n] = boxes[:n], classes[:n]
  out = {
      "image": (example["image"] if example["image"].dtype == np.float32
                else preprocess_lib.normalize_image(example["image"], preprocess)),
      "boxes": padded_boxes,
      "classes": padded_classes,
      "box_mask": np.arange(max_boxes) < n,
      "image_id": np.int64(example["image_id"]),
      "orig_size": np.asarray(example["orig_size"], np.int32),
      "scale": np.asarray(scale, np.float32),
      "example_mask": np.bool_(example_mask),
  }
  if "mask" in example:
    out["mask"] = np.asarray(example["mask"], np.int32)
  if image_hw is not None:
    out["image_hw"] = np.asarray(image_hw, np.int32)
  if max_proposals:
    out["proposals"], out["proposal_mask"] = _pad_proposals(
        example.get("proposals", np.zeros((0, 4), np.float32)), max_proposals)
  return out


def eval_example(example, *, image_size, max_boxes, example_mask=True,
                 preprocess=preprocess_lib.DEFAULT, max_proposals=0):
  """One example resized by the model's rule (top-left letterbox, stretch, or torchvision's
  min/max-size rule top-left on the S x S canvas), no randomness (boxes, and ``proposals``
  ``[p, 4]`` if any, scaled with the pixels; a ``mask`` uint8 ``[H, W]`` resized by nearest
  neighbour and padded with 255), normalized and padded as the model says (``preprocess``: a
  ``jaxdet.data.preprocess.Preprocess`` or None for the defaults). With ``max_proposals``, the
  output has ``proposals`` ``[max_proposals, 4]`` + ``proposal_mask``; with the ``"rcnn"`` rule,
  ``image_hw`` int32 ``[2]``, the image's extent in the canvas (torchvision's ``image_sizes``:
  detections are clipped to it)."""
  pre = preprocess_lib.settings(preprocess)
  h, w = example["image"].shape[:2]
  image, (new_h, new_w) = preprocess_lib.network_input(example["image"], image_size, pre,
                                                        canvas=(image_size, image_size))
  sx, sy = new_w / w, new_h / h
  to_input = np.array([sx, sy, sx, sy], np.float32)
  example = dict(example, image=image, boxes=example["boxes"] * to_input)
  if "proposals" in example:
    example["proposals"] = np.asarray(example["proposals"], np.float32) * to_input
  if "mask" in example:  # nearest neighbour, the letterbox padding ignored (255)
    example["mask"] = masks_lib.mask_to_input(example["mask"], image_size, pre)
  return _finalize(example, max_boxes=max_boxes, scale=(sx, sy), example_mask=example_mask,
                   preprocess=pre, max_proposals=max_proposals,
                   image_hw=(new_h, new_w) if pre.resize == "rcnn" else None)


class _TrainFn:
  """Stream index -> augmented, finalized example (a pure function of ``(seed, index)``)."""

  def __init__(self, records, shard, *, seed, image_size, max_boxes, cfg, preprocess,
               max_proposals=0):
    self.records, self.shard, self.seed = records, shard, seed
    self.image_size, self.max_boxes, self.cfg = image_size, max_boxes, cfg
    self.preprocess, self.max_proposals = preprocess, max_proposals

  @functools.lru_cache(maxsize=2)
  def _permutation(self, epoch):
    return np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(len(self.shard))

  def __call__(self, g):
    epoch, pos = divmod(int(g), len(self.shard))
    rng = np.random.default_rng([self.seed, int(g)])
    load = lambda i: self.records[int(self.shard[i])]  # i: position inside this host's shard
    out = augment_lib.augment(rng, load, int(self._permutation(epoch)[pos]), self.image_size,
                              self.cfg, len(self.shard))
    h, w = (int(v) for v in out["orig_size"])
    if self.preprocess.resize == "stretch":
      scale = (self.image_size / w, self.image_size / h)
    elif self.preprocess.resize == "rcnn":
      scale = (preprocess_lib.rcnn_scale(h, w, self.preprocess.min_size,
                                         self.preprocess.max_size),) * 2
    else:
      scale = (self.image_size / max(h, w),) * 2
    return _finalize(out, max_boxes=self.max_boxes, scale=scale, example_mask=True,
                     preprocess=self.preprocess, max_proposals=self.max_proposals)


def _shard_indices(n, shard_index, shard_count, *, pad):
  """Contiguous per-host shard of ``range(n)``; equal sizes (train drops the tail, eval pads)."""
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index={shard_index} must be in [0, shard_count={shard_count})")
  if pad:
    per = -(-n // shard_count)
    return np.arange(shard_index * per, min((shard_index + 1) * per, n)), per
  per = n // shard_count
  return np.arange(shard_index * per, (shard_index + 1) * per), per


class _EvalFn:
  """Position -> letterboxed example; positions past the shard give ``example_mask=False``."""

  def __init__(self, records, shard, *, image_size, max_boxes, preprocess, masks=False,
               max_proposals=0):
    self.records, self.shard, self.masks = records, shard, masks
    self.image_size, self.max_boxes, self.preprocess = image_size, max_boxes, preprocess
    self.max_proposals = max_proposals

  def __call__(self, pos):
    valid = pos < len(self.shard)
    example = self.records[int(self.shard[pos if valid else 0])] if len(self.shard) else None
    if example is None:  # an empty shard: a blank padding example
      s = self.image_size
      example = {"image": np.zeros((s, s, 3), np.uint8), "boxes": np.zeros((0, 4), np.float32),
                 "classes": np.zeros((0,), np.int32), "image_id": np.int64(-1),
                 "orig_size": np.array([s, s], np.int32)}
      if self.masks:
        example["mask"] = np.full((s, s), masks_lib.IGNORE, np.uint8)
    out = eval_example(example, image_size=self.image_size, max_boxes=self.max_boxes,
                       example_mask=valid, preprocess=self.preprocess,
                       max_proposals=self.max_proposals)
    if not valid:
      out["box_mask"][:] = False
      out["image_id"] = np.int64(-1)
      if "mask" in out:  # a padding row never counts, even where example_mask is not read
        out["mask"][:] = masks_lib.IGNORE
      if "proposal_mask" in out:
        out["proposal_mask"][:] = False
    return out


class _RowsFn:
  """Local index ``k`` -> example ``(k // b) * B + lo + k % b`` of the global stream: rows
  ``[lo, lo + b)`` of every global batch of ``B``."""

  def __init__(self, fn, global_batch, lo, rows):
    self.fn, self.global_batch, self.lo, self.rows = fn, global_batch, lo, rows

  def __call__(self, k):
    batch, row = divmod(int(k), self.rows)
    return self.fn(batch * self.global_batch + self.lo + row)


def _rows_of_batches(fn, stop, batch_size, batch_rows, *, train):
  """``(fn, stop, rows per batch)`` reading only rows ``batch_rows`` of each global batch."""
  lo, hi = (int(v) for v in batch_rows)
  if not train:
    raise ValueError("batch_rows is for training; evaluation shards by shard_index/shard_count")
  if not 0 <= lo < hi <= batch_size:
    raise ValueError(f"batch_rows={tuple(batch_rows)} must satisfy 0 <= start < stop <= "
                     f"batch_size={batch_size}")
  rows = hi - lo
  local_stop = stop if stop == sys.maxsize else (stop // batch_size) * rows
  return _RowsFn(fn, batch_size, lo, rows), local_stop, rows


def input_pipeline(dataset, split, *, batch_size, image_size, max_boxes, train, seed,
                   data_dir=None, augment=None, num_epochs=None, shard_index=None,
                   shard_count=None, drop_remainder=None, start_step=0, worker_count=0,
                   num_threads=2, prefetch=4, preprocess=None, batch_rows=None, masks=False,
                   proposals_file=None, max_proposals=300):
  """Batches of a TFDS detection dataset with static shapes.

  Training streams shuffled (per-epoch permutation), augmented examples; evaluation reads the
  split in order, resizes by the model's rule (top-left letterbox or stretch) without randomness
  and pads the last batch with ``example_mask=False``. Images are normalized as the model says
  (``preprocess``). Batches are a pure function of ``(seed, step)``.

  Args:
    dataset: TFDS name (``shapes``, ``shapes/small``, ``voc/2007``, ``coco/2017``, an imported
      NAME).
    split: split name, e.g. ``train`` or ``validation`` (TFDS slicing such as ``train[:10%]``
      is accepted).
    batch_size: examples per batch ``B`` (per host).
    image_size: square network input side ``S``.
    max_boxes: boxes per example after padding/truncation.
    train: augment + shuffle + repeat (True) or deterministic eval order (False).
    seed: int seed of the shuffle and the augmentation.
    data_dir: TFDS data dir (TFDS default when None).
    augment: ``AugmentConfig``, dict/ConfigDict of its fields, a preset name (``"none"``,
      ``"default"``, ``"full"``, ``"ssd"``, ``"mosaic"``; ``augment.PRESETS``) or None
      (defaults). Ignored when ``train=False``. Mosaic's three extra images are records drawn
      by index from the example's own seeded generator (random access), so a mosaic batch is
      still a pure function of ``(seed, step)``.
    num_epochs: training epochs (None: infinite). Evaluation always reads one epoch.
    shard_index: this host's shard (default ``jax.process_index()``).
    shard_count: number of shards (default ``jax.process_count()``).
    drop_remainder: drop a final partial batch (default: True for training, False for eval,
      where the last batch is padded instead).
    start_step: first batch to produce: resuming at step k gives exactly the batches k, k+1, ...
      of an uninterrupted run.
    worker_count: grain worker processes (0: threads in this process).
    num_threads: reader threads (batches computed concurrently).
    prefetch: batches buffered ahead.
    preprocess: the model's ``config.model.preprocess`` (ConfigDict, dict, ``Preprocess`` or None
      for the defaults): normalization of every batch and the eval resize rule. A "stretch"
      model also trains on stretched base resizes (``augment.resize`` becomes "plain").
    batch_rows: ``(start, stop)``: yield only these rows of every batch (training), so that the
      processes of a multi-process run, each reading its own rows of the same ``batch_size``
      global batch, together read exactly the batches of one process. Default: all rows.
    masks: also yield ``mask`` (the dataset's ``segmentation/mask``), moved with the image by
      every geometric step (resize, letterbox, flip, crop, mosaic, cutmix; nearest neighbour;
      padding 255 = ignore; with mixup, the mask of the image of larger weight).
    proposals_file: a proposals ``.npz`` (``jaxdet.data.proposals``; ``{split}`` in the name is
      replaced by ``split``): also yield the first ``max_proposals`` proposals of each image
      (joined by image id), moved by the same resize, flip and crop as its boxes (and clipped;
      rows are never dropped). Mosaic, mixup, CutMix and the SSD ops are refused with it.
    max_proposals: ``P``, proposals per example after padding/truncation.

  Returns:
    a grain ``IterDataset``; iterating yields dicts of NumPy arrays: ``image`` float32
    ``[B,S,S,3]`` normalized, ``boxes`` float32 ``[B,max_boxes,4]`` xyxy input pixels,
    ``classes`` int32 ``[B,max_boxes]``, ``box_mask`` bool ``[B,max_boxes]``, ``image_id`` int64
    ``[B]``, ``orig_size`` int32 ``[B,2]`` (h, w), ``scale`` float32 ``[B,2]`` (sx, sy) with
    ``boxes_orig = boxes / [sx, sy, sx, sy]`` (eval), ``example_mask`` bool ``[B]``; with
    ``masks``, ``mask`` int32 ``[B,S,S]`` class ids in network-input pixels (0 background,
    label + 1, 255 ignore); with ``proposals_file``, ``proposals`` float32 ``[B,P,4]`` xyxy input
    pixels and ``proposal_mask`` bool ``[B,P]`` (False: padding, or cropped away).

  Raises:
    ValueError: bad arguments, an unknown dataset/split, or ``masks=True`` on a dataset without
      the ``segmentation/mask`` feature (named, with the dataset); an image id missing from the
      proposals file (when read), or an augmentation that cannot move proposals.
    FileNotFoundError: no proposals file.
  """
  import grain  # pylint: disable=g-import-not-at-top
  for name, value in (("batch_size", batch_size), ("image_size", image_size),
                      ("max_boxes", max_boxes)):
    if int(value) <= 0:
      raise ValueError(f"{name} must be positive, got {value}")
  if start_step < 0:
    raise ValueError(f"start_step must be >= 0, got {start_step}")
  if shard_index is None or shard_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    shard_index = jax.process_index() if shard_index is None else shard_index
    shard_count = jax.process_count() if shard_count is None else shard_count
  pre = preprocess_lib.settings(preprocess)
  records = _Records(dataset, split, data_dir, masks=masks)
  max_proposals = int(max_proposals) if proposals_file else 0
  if proposals_file:
    if max_proposals < 1:
      raise ValueError(f"max_proposals must be >= 1 with a proposals file, got {max_proposals}")
    records = _WithProposals(records, proposals_lib.split_path(proposals_file, split),
                             max_proposals)
  if drop_remainder is None:
    drop_remainder = train
  if train:
    shard, _ = _shard_indices(len(records), shard_index, shard_count, pad=False)
    if len(shard) == 0:
      raise ValueError(f"{dataset}:{split} has {len(records)} examples, too few for "
                       f"{shard_count} shards")
    cfg = augment_lib.make_config(augment)
    if pre.resize == "stretch":  # train on what the model sees at inference: no letterbox
      cfg = dataclasses.replace(cfg, resize="plain")
    elif pre.resize == "rcnn":  # torchvision's scale; the padding normalizes to ~0 as its pad
      cfg = dataclasses.replace(cfg, resize="rcnn", rcnn_sizes=(pre.min_size, pre.max_size),
                                fill=preprocess_lib.mean_pixel(pre))
    unsafe = [f"{k}={getattr(cfg, k)}" for k in augment_lib.PROPOSAL_UNSAFE_OPS
              if max_proposals and getattr(cfg, k) > 0]
    if unsafe:
      raise ValueError(f"augment ops {unsafe} cannot move external proposals; use augment "
                       f"'none' or 'default' (scale jitter, flip, colour) with a proposals file")
    fn = _TrainFn(records, shard, seed=seed, image_size=image_size, max_boxes=max_boxes, cfg=cfg,
                  preprocess=pre, max_proposals=max_proposals)
    stop = sys.maxsize if num_epochs is None else int(num_epochs) * len(shard)
  else:
    shard, per = _shard_indices(len(records), shard_index, shard_count, pad=True)
    fn = _EvalFn(records, shard, image_size=image_size, max_boxes=max_boxes, preprocess=pre,
                 masks=masks, max_proposals=max_proposals)
    # Every host yields the same number of batches; positions past the shard are padding.
    stop = per if drop_remainder else -(-per // batch_size) * batch_size
  if batch_rows is not None:
    fn, stop, batch_size = _rows_of_batches(fn, stop, batch_size, batch_rows, train=train)
  start = min(start_step * batch_size, stop)
  ds = grain.MapDataset.range(start, stop).map(fn).batch(batch_size,
                                                        drop_remainder=drop_remainder)
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=max(num_threads, 1),
                                            prefetch_buffer_size=max(prefetch, 1)))
  if worker_count > 0:
    from absl import flags  # pylint: disable=g-import-not-at-top
    if not flags.FLAGS.is_parsed():  # grain's workers read absl flags; use their defaults
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count,
                                                     per_worker_buffer_size=prefetch))
  return it
