import os
import sys

# torch's CPU allocator maps tensors over 2 MiB fresh and returns them on free; with this it asks for
# transparent huge pages, so the FP32 reference's VAE activations (44 GB allocated in one 500-frame
# decode at full size) are faulted in 2 MiB at a time, not 4 KiB: that call 20.8 -> 17.6 s, the peak
# unchanged (TRIALS.md, "validate · references first"). torch reads it once, before its first tensor.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from .cli import main  # noqa: E402  (after the environment torch reads)

sys.exit(main())
