"""Offline ASR for the end-to-end checks: Whisper base rebuilt from pinned PyPI wheels, and scoring.

`load_whisper("base")` needs no network: see `whisper_offline`. `score(...)` gives WER (English) or
CER (Chinese) of a transcript against the text that was spoken: see `scoring`.
"""
from .whisper_offline import AsrModelError, load_whisper  # noqa: F401
from .scoring import char_error_rate, score, transcribe, word_error_rate  # noqa: F401
