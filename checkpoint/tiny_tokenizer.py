"""An offline Llama-style tokenizer for fixture checkpoints.

VoxCPM 1.5 ships a Llama (SentencePiece-BPE) tokenizer: `<unk> <s> </s>`, 256 byte-fallback
tokens `<0x00>..<0xFF>`, then merged pieces with "▁" for spaces. The real one cannot be
downloaded here, so fixtures get a small one of the same kind, trained deterministically on a
built-in bilingual corpus that repeats Chinese words so that multi-character Chinese tokens
exist (VoxCPM splits those into single characters before lookup).
"""
from __future__ import annotations

import json
from pathlib import Path

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]

_ENGLISH = [
    "Hello, this is a test of the voice cloning system.",
    "The quick brown fox jumps over the lazy dog.",
    "This is the prompt transcript.",
    "Speech synthesis turns written text into natural sounding audio.",
    "We convert the model to Core ML and prove that the result is right.",
    "Numbers like one two three four five six seven eight nine ten.",
]
_CHINESE = [
    "你好，这是一个语音克隆系统的测试。",
    "今天天气很好，我们一起去公园散步吧。",
    "语音合成把文字变成自然的声音。",
    "欢迎使用中文语音合成模型。",
    "你好世界，测试测试。",
]


def _corpus() -> list[str]:
    # Repetition makes the trainer merge frequent words, Chinese ones included.
    return (_ENGLISH + _CHINESE) * 20


def build_tokenizer(vocab_size: int = 640):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    metaspace = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer_tok.pre_tokenizer = metaspace
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    trainer_tok.train_from_iterator(_corpus(), trainer=trainer)

    trained = json.loads(trainer_tok.to_str())["model"]
    pieces = sorted((tok for tok in trained["vocab"] if tok not in SPECIAL_TOKENS), key=trained["vocab"].get)
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + BYTE_TOKENS + pieces)}
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]

    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>",
                                     fuse_unk=True, byte_fallback=True))
    tokenizer.normalizer = None
    tokenizer.pre_tokenizer = metaspace
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                           decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    return tokenizer


def write_tokenizer(directory: Path, vocab_size: int = 640) -> int:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json; return the vocab size."""
    directory = Path(directory)
    tokenizer = build_tokenizer(vocab_size)
    tokenizer.save(str(directory / "tokenizer.json"))
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    config = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": False, "add_eos_token": False,
              "legacy": False, "model_max_length": 32768, **specials}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (directory / "special_tokens_map.json").write_text(json.dumps(specials, indent=2), encoding="utf-8")
    return tokenizer.get_vocab_size()
