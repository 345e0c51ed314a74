"""Text preparation and tokenization, with `tokenizers` alone (no transformers, no torch).

Mirrors voxcpm's text preparation and the tokenizer it builds: transformers 5's
LlamaTokenizerFast ignores the normalizer/pre-tokenizer stored in tokenizer.json and rebuilds
`Metaspace("▁", prepend_scheme="first", split=False)` with no normalizer (see TRIALS.md), and
voxcpm's `mask_multichar_chinese_tokens` wrapper then splits multi-character pure-CJK tokens
into single characters before looking the ids up.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from .errors import GenerationError

SPACE = "▁"


def prepare_text(text: str) -> str:
    """`\\n` -> space, whitespace runs -> one space (voxcpm's own preparation)."""
    return re.sub(r"\s+", " ", text.replace("\n", " "))


def _is_cjk(token: str) -> bool:
    return all("\u4e00" <= c <= "\u9fff" for c in token)


def special_tokens(directory: Path) -> dict[str, str]:
    """name -> content of the special tokens transformers registers (bos, eos, unk, pad, additional…)."""
    found: dict[str, str] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):  # the map wins, as in transformers
        try:
            data = json.loads((Path(directory) / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for key, value in data.items():
            if key == "additional_special_tokens" and isinstance(value, list):
                items = [(f"{key}_{i}", v) for i, v in enumerate(value)]
            elif key.endswith("_token"):
                items = [(key, value)]
            else:
                continue
            for k, v in items:
                content = v.get("content") if isinstance(v, dict) else v  # the AddedToken form
                if isinstance(content, str) and content:
                    found[k] = content
    return found


class TextTokenizer:
    """`TextTokenizer(tokenizer.json)(text)` -> ids, equal to `ReferencePipeline.tokenize(text)`."""

    def __init__(self, tokenizer_json: Path):
        from tokenizers import Tokenizer, pre_tokenizers

        try:
            self._tok = Tokenizer.from_file(str(tokenizer_json))
        except Exception as exc:  # tokenizers raises a bare Exception for malformed files
            raise GenerationError(f"cannot read the tokenizer {tokenizer_json} ({exc}): convert again") from None
        # what transformers 5 rebuilds for LlamaTokenizer, whatever tokenizer.json says
        self._tok.normalizer = None
        self._tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="first", split=False)
        specials = special_tokens(Path(tokenizer_json).parent)
        self._add_special_tokens(specials.values())
        vocab = self._tok.get_vocab(with_added_tokens=True)
        # voxcpm: vocabulary entries of >= 2 characters, all CJK, are split into characters
        self._multichar = {t for t in vocab if len(t) >= 2 and _is_cjk(t)}
        unk = specials.get("unk_token") or getattr(self._tok.model, "unk_token", None) or "<unk>"
        self._unk_id = vocab.get(unk)

    def _add_special_tokens(self, contents) -> None:
        """transformers registers the special tokens as added tokens, so "<s>" in a text is one token, not
        "<", "s", ">"; a tokenizer.json may not list them itself (the fixture's does not)."""
        from tokenizers import AddedToken

        known = {t.content for t in self._tok.get_added_tokens_decoder().values()}
        missing = [t for t in dict.fromkeys(contents) if t not in known]
        if missing:
            self._tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])

    def tokens(self, text: str) -> list[str]:
        """The pieces of voxcpm's CharTokenizerWrapper.tokenize."""
        out: list[str] = []
        for piece in self._tok.encode(text, add_special_tokens=False).tokens:
            clean = piece.replace(SPACE, "")  # voxcpm drops every "▁" before the lookup
            if clean in self._multichar:
                out.extend(clean)
            else:
                out.append(piece)
        return out

    def __call__(self, text: str) -> list[int]:
        """Token ids, no BOS; an unknown piece -> the unk id (transformers' convert_tokens_to_ids)."""
        ids = [self._tok.token_to_id(t) for t in self.tokens(text)]
        if None in ids and self._unk_id is None:
            raise GenerationError("the text has a piece the tokenizer does not know, and it has no unk token: "
                                  "remove unusual characters")
        return [self._unk_id if i is None else i for i in ids]
