"""The FP32 PyTorch reference generator: the one generation loop driving the patched torch components."""
