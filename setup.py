"""Package list for setuptools; all other metadata is in pyproject.toml.

The `export/` folder installs under the import name `jaxdet_export` (package-dir mapping): a
generic top-level name like `export` can clash with other installed packages. `find_packages`
cannot see through such a mapping, hence this file.
"""

import setuptools

setuptools.setup(
    packages=setuptools.find_packages(include=["jaxdet", "jaxdet.*"]) + ["jaxdet_export"],
    package_dir={"jaxdet_export": "export"},
    # The built-in Darknet network files (`config.model.cfg`) ship with the package.
    package_data={"jaxdet.models": ["darknet_cfgs/*.cfg", "darknet_cfgs/README.md"]},
)
