"""Converters of other frameworks' weights into jaxdet checkpoints (`jaxdet convert ...`).

They sit outside the models: a model never knows where its weights came from. A converter is a
name map plus the source's own conventions (layouts, BatchNorm epsilon, its preprocessing).
"""
