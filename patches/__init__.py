"""Make the PyTorch VoxCPM 1.5 convertible; every patch is proven equal to the original (tests/patches).

Importing this package registers the torchaudio/librosa stand-ins (see `compat`) before any
module here imports voxcpm.
"""
from .compat import install_standins

install_standins()
