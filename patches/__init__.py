"""Make the PyTorch VoxCPM 1.5 convertible; every patch is proven equal to the original (tests/patches).

One small module per patch (gqa, masks, rope, kv_cache, attention, mup, lm, snake, weight_norm),
`apply` to patch a loaded model in place, `modules` for the component modules conversion traces
(the declaration in `contract/` names them), `prove` to measure every patch on any checkpoint.
Importing this package registers the torchaudio/librosa stand-ins (`checkpoint.compat`) before any
module here imports voxcpm.
"""
from checkpoint.compat import install_standins

install_standins()
