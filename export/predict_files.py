"""`jaxdet predict` inputs and output names: files, folders and globs -> unique output names."""

import dataclasses
import glob
import os
import pathlib

_GLOB_CHARS = "*?["


@dataclasses.dataclass(frozen=True)
class InputImage:
  """One image to predict on.

  Attributes:
    path: the file (absolute), or None for a dataset example.
    name: its unique name relative to the inputs' common folder, e.g. `a/x.jpg` (what outputs
      are named after).
    image_id: the COCO image id written with `--format coco`.
  """
  path: pathlib.Path | None
  name: str
  image_id: int


def image_extensions() -> frozenset[str]:
  """Lower-case file suffixes PIL can open (`.jpg`, `.png`, ...)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  return frozenset(Image.registered_extensions())


def is_url(text: str) -> bool:
  return "://" in text


def expand_inputs(args: list[str]) -> tuple[list[pathlib.Path], list[tuple[str, str]]]:
  """Files, folders (their image files, not recursive) and globs (`**` recursive) -> files.

  Args:
    args: the command-line inputs.

  Returns:
    `(files, problems)`: absolute paths, sorted within each argument, first occurrence kept;
    `problems` are `(argument, reason)` of arguments that give no file.

  Raises:
    ValueError: an argument is a URL (no network access is assumed).
  """
  for text in args:
    if is_url(text):
      raise ValueError(f"URLs are not supported (no network access): {text}; download the "
                       f"file and pass its path")
  extensions = image_extensions()
  files, problems, seen = [], [], set()
  for text in args:
    path = pathlib.Path(text).expanduser()
    if path.is_dir():
      found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in extensions)
      if not found:
        nested = any(p.is_dir() for p in path.iterdir())
        problems.append((text, "folder has no image files" + (
            f" (its subfolders are not searched: pass '{os.path.join(text, '**', '*')}' for "
            f"them)" if nested else "")))
    elif any(c in text for c in _GLOB_CHARS) and not path.exists():
      found = sorted(pathlib.Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True)
                     if os.path.isfile(p))
      if not found:
        problems.append((text, "no file matches this pattern"))
    elif path.is_file():
      found = [path]
    else:
      problems.append((text, "not found"))
      found = []
    for p in found:
      p = p.absolute()
      if p not in seen:
        seen.add(p)
        files.append(p)
  return files, problems


def name_inputs(files: list[pathlib.Path]) -> list[InputImage]:
  """Unique names for files: paths relative to their common folder (`a/x.jpg`, `b/x.jpg`).

  COCO image ids are 1, 2, ... in the order of `files`.
  """
  if not files:
    return []
  root = pathlib.Path(os.path.commonpath([str(f.parent) for f in files]))
  return [InputImage(path=f, name=f.relative_to(root).as_posix(), image_id=i + 1)
          for i, f in enumerate(files)]


def output_names(names: list[str], suffix: str) -> list[str]:
  """Output file names mirroring input names, unique even when stems collide.

  `a/x.jpg` -> `a/x{suffix}`; when `a/x.jpg` and `a/x.png` are both inputs they become
  `a/x_jpg{suffix}` and `a/x_png{suffix}`.

  Args:
    names: unique relative input names (`/`-separated).
    suffix: e.g. `.png` or `.txt`.

  Returns:
    list of unique relative output names, in order.
  """
  stems = [n.rsplit(".", 1)[0] if "." in n.rsplit("/", 1)[-1] else n for n in names]
  counts = {}
  for s in stems:
    counts[s.lower()] = counts.get(s.lower(), 0) + 1
  out, used = [], set()
  for name, stem in zip(names, stems):
    base = stem
    if counts[stem.lower()] > 1 and stem != name:
      base = f"{stem}_{name.rsplit('.', 1)[1]}"
    candidate, k = base + suffix, 2
    while candidate.lower() in used:  # case-insensitive file systems
      candidate, k = f"{base}_{k}{suffix}", k + 1
    used.add(candidate.lower())
    out.append(candidate)
  return out
