"""The GPU check: every model built, verified and timed on CUDA in one command, for the short
windows in which a GPU is lent (``python -m zoo.verify.gpu``; docs/gpu.md). ``--provider cpu`` is
its dry run, which CI runs. Only torch, onnx, onnxruntime, onnxscript, onnx-ir and numpy are
imported on its path: that is all the GPU machine has.
"""
