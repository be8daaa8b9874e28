"""`jaxdet_export.predict_files`: expanding `jaxdet predict` inputs (no model needed)."""

from PIL import Image

from jaxdet_export import predict_files


def test_folder_of_subfolders_says_how_to_include_them(tmp_path):
  """A folder holding only subfolders of images gave a bare "folder has no image files"."""
  (tmp_path / "a").mkdir()
  Image.new("RGB", (8, 8)).save(tmp_path / "a" / "x.jpg")
  files, problems = predict_files.expand_inputs([str(tmp_path)])
  assert files == [] and len(problems) == 1
  assert "subfolders are not searched" in problems[0][1]
  assert f"'{tmp_path}/**/*'" in problems[0][1]
  files, problems = predict_files.expand_inputs([f"{tmp_path}/**/*"])
  assert files == [tmp_path / "a" / "x.jpg"] and problems == []
  (tmp_path / "empty").mkdir()
  _, problems = predict_files.expand_inputs([str(tmp_path / "empty")])
  assert problems == [(str(tmp_path / "empty"), "folder has no image files")]
