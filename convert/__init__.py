"""Convert VoxCPM 1.5 to Core ML packages: `python -m convert --help`.

Torch-free at import: `convert.interface` (the declared Core ML interface of every component)
is read by the torch-free generator. The heavy modules (`convert.components`, `convert.pipeline`)
import torch and coremltools when used.
"""
