"""VoxCPM 1.5 checkpoints: load one strictly (a hub id or a local directory), or build a random one.

`loading` (strict FP32 loading, one-line errors), `compat` (torchaudio/librosa stand-ins so that
voxcpm imports here), `fixture` and `tiny_tokenizer` (deterministic random checkpoints for tests
and measurements). `python -m checkpoint MODEL` loads one and says what it is.
"""
