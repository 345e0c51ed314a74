"""The torch-free tokenizer gives the reference's (transformers + voxcpm wrapper) ids."""
import pytest

from generate.text import TextTokenizer, prepare_text

TEXTS = {
    "english": "Hello, this is a test of the voice cloning system.",
    "chinese": "你好，这是一个语音克隆系统的测试。",
    "chinese_words": "今天天气很好 测试测试 你好世界",
    "mixed": "Hello 你好世界 world! 今天天气很好, we convert the model.",
    "emoji": "emoji 😀🎉 test ✓",
    "specials_and_unknown": "a <s> x </s> <unk> Ωß∑",
    "spaces": "  two  spaces\tand\nnewline ",
    "empty": "",
}


@pytest.fixture(scope="module")
def tokenizers(ref_never, tiny_never_stop_dir):
    return ref_never, TextTokenizer(tiny_never_stop_dir / "tokenizer.json")


@pytest.mark.parametrize("name", TEXTS)
def test_same_ids_as_reference(tokenizers, name):
    reference, ours = tokenizers
    for text in (TEXTS[name], prepare_text(TEXTS[name])):
        assert ours(text) == reference.tokenize(text), text


def test_multichar_chinese_tokens_are_split(tokenizers):
    _, ours = tokenizers
    pieces = ours.tokens("测试测试")
    assert "测试" not in pieces and pieces.count("测") == 2  # the fixture vocabulary has "测试"


def _voxcpm_prepare(text: str) -> str:
    """voxcpm 2.0.3's own two lines (voxcpm/core.py, VoxCPM._generate)."""
    import re

    text = text.replace("\n", " ")
    return re.sub(r"\s+", " ", text)


def test_prepare_text_matches_reference():
    for text in TEXTS.values():
        assert prepare_text(text) == _voxcpm_prepare(text)
