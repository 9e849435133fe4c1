"""Training, export and quantisation of the bundled model (needs the ``[train]`` extra: torch, onnx, scikit-learn).

Nothing in the inference path imports this package.
"""
