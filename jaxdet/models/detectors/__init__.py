"""Detector families, one module each; `jaxdet.models.registry` discovers and registers them.

A family module sets `name` (= its file name) and defines `default_config`, `test_config`,
`build`, `loss_fn` and `decode` (the `registry.DetectorFamily` protocol). Modules whose name starts
with `_` are private helpers, not families.
"""
