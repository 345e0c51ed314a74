"""Transcribe speech with Whisper and score it against the text that was spoken.

English is scored by word error rate (WER), Chinese (and other unsegmented scripts) by character
error rate (CER). Both sides of a comparison go through the same normalisation:

* WER: NFKC, lower case, apostrophes dropped ("don't" -> "dont"), every other punctuation or symbol
  character becomes a space, whitespace collapsed; then jiwer.
* CER: NFKC (full-width forms -> ASCII), Traditional -> Simplified (OpenCC's t2s tables from the
  pinned pure-Python `opencc-python-reimplemented`, or a small built-in table when it is missing),
  lower case, every punctuation, symbol and whitespace character removed (ASCII and CJK alike);
  then a character-level Levenshtein distance divided by the reference length.

Numbers are not verbalised ("3" vs "three" counts as an error): choose test sentences without digits.
"""
from __future__ import annotations

import functools
import math
import unicodedata

import numpy as np

WHISPER_SAMPLE_RATE = 16_000
#: languages written without spaces between words: scored by CER
CER_LANGUAGES = frozenset({"zh", "yue", "ja", "th", "lo", "my", "bo"})


# --------------------------------------------------------------------------------------- transcribe

def to_whisper_audio(audio, sample_rate: int) -> np.ndarray:
    """Mono float32 at 16 kHz. Accepts (n,), (n, channels) or (channels, n); ints are scaled to ±1."""
    x = np.asarray(audio)
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
    x = x.astype(np.float32, copy=False)
    if x.ndim == 2:
        channel_axis = 0 if x.shape[0] < x.shape[1] else 1
        x = x.mean(axis=channel_axis)
    elif x.ndim != 1:
        raise ValueError(f"audio must be 1-D or 2-D, got shape {x.shape}")
    sample_rate = int(sample_rate)
    if sample_rate <= 0:
        raise ValueError(f"bad sample rate {sample_rate}")
    if sample_rate != WHISPER_SAMPLE_RATE:
        from scipy.signal import resample_poly

        g = math.gcd(sample_rate, WHISPER_SAMPLE_RATE)
        x = resample_poly(x, WHISPER_SAMPLE_RATE // g, sample_rate // g).astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError("audio has NaN or infinite samples")
    return np.ascontiguousarray(x, dtype=np.float32)


def transcribe(model, audio, sample_rate: int, language: str) -> str:
    """Whisper's transcript of `audio`, deterministic: forced language, greedy (temperature 0 with no
    fallback), fp32, and no conditioning on previously decoded text."""
    x = to_whisper_audio(audio, sample_rate)
    result = model.transcribe(
        x,
        language=language,
        task="transcribe",
        temperature=0.0,
        fp16=False,
        condition_on_previous_text=False,
        verbose=None,
    )
    return result["text"].strip()


# ------------------------------------------------------------------------------------ normalisation

def _is_punct_or_symbol(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"


def normalize_words(text: str) -> str:
    """Lower case, punctuation stripped, whitespace collapsed (English WER)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.replace("'", "").replace("\u2019", "").replace("\u2018", "")
    text = "".join(" " if _is_punct_or_symbol(ch) else ch for ch in text)
    return " ".join(text.split())


def normalize_chars(text: str) -> str:
    """Traditional folded to Simplified, punctuation and whitespace removed (Chinese CER)."""
    text = to_simplified(unicodedata.normalize("NFKC", text)).lower()
    return "".join(ch for ch in text if not (ch.isspace() or _is_punct_or_symbol(ch)))


# Used only when opencc-python-reimplemented is not installed: common characters of everyday text.
_T2S_FALLBACK = (
    "這这個个們们來来說说時时會会為为對对發发國国學学麼么點点還还過过語语聲声試试測测統统係系"
    "複复製制開开關关見见現现樣样讓让頭头機机電电話话車车長长門门問问間间聽听讀读寫写書书號号"
    "氣气東东馬马鳥鸟魚鱼愛爱歡欢謝谢請请認认識识後后裡里裏里經经給给從从無无動动種种實实體体"
    "應应當当變变進进邊边頁页題题顯显視视覺觉親亲義义務务習习飛飞鐘钟錢钱銀银風风雲云幾几處处"
    "買买賣卖離离難难雖虽壓压廣广歲岁歷历萬万與与專专業业兩两嚴严產产為为麗丽舉举義义烏乌樂乐"
    "喬乔習习書书亂乱爭争亞亚區区華华協协單单賣卖衛卫廠厂縣县參参雙双變变葉叶號号員员圖图園园"
    "場场塊块壞坏夢梦夠够奮奋婦妇媽妈孫孙寶宝將将導导屬属島岛帶带師师幫帮廳厅強强彈弹彙汇"
    "徑径徵征戶户擇择據据擔担換换揮挥損损搖摇數数斷断晉晋曉晓會会朧胧條条來来極极標标權权歐欧"
    "歸归殺杀漢汉滿满點点熱热獨独環环畫画當当療疗發发盡尽眾众礙碍確确禮礼稱称穩稳窮穷筆笔"
    "節节範范簡简類类紅红約约級级紙纸細细終终組组結结絕绝網网線线練练總总緒绪續续織织"
    "聯联職职腦脑腳脚興兴藝艺蘇苏術术衝冲裝装計计記记許许設设訪访證证評评詞词試试詩诗該该"
    "誤误課课調调談谈論论諸诸講讲議议護护負负貨货質质費费資资賽赛趕赶轉转輕轻農农運运達达"
    "選选還还適适鄉乡醫医針针鏡镜閱阅陽阳陳陈隊队際际險险隨随雞鸡雜杂靈灵響响須须預预領领"
    "風风飯饭養养館馆驗验體体髮发鬥斗黨党齊齐龍龙龜龟"
)
_T2S_TABLE = {ord(_T2S_FALLBACK[i]): _T2S_FALLBACK[i + 1] for i in range(0, len(_T2S_FALLBACK), 2)}


@functools.lru_cache(maxsize=1)
def _opencc_t2s():
    """OpenCC's converter if an `opencc` module is importable, else None."""
    try:
        from opencc import OpenCC
    except ImportError:
        return None
    for config in ("t2s", "t2s.json"):
        try:
            return OpenCC(config)
        except Exception:  # noqa: BLE001 - the two OpenCC packages name configs differently
            continue
    return None


def t2s_backend() -> str:
    return "opencc" if _opencc_t2s() is not None else "builtin"


def to_simplified(text: str) -> str:
    """Traditional Chinese characters folded to Simplified (other text unchanged)."""
    cc = _opencc_t2s()
    if cc is not None:
        return cc.convert(text)
    return text.translate(_T2S_TABLE)


# ------------------------------------------------------------------------------------------- rates

def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER after `normalize_words` on both sides. An empty hypothesis scores 1.0."""
    import jiwer

    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    if not ref:
        raise ValueError("the reference text has no words")
    if not hyp:
        return 1.0
    return float(jiwer.wer(ref, hyp))


def edit_distance(a, b) -> int:
    """Levenshtein distance between two sequences (substitution, insertion, deletion cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def char_error_rate(reference: str, hypothesis: str) -> float:
    """CER after `normalize_chars` on both sides: edits / reference characters (can exceed 1)."""
    ref, hyp = normalize_chars(reference), normalize_chars(hypothesis)
    if not ref:
        raise ValueError("the reference text has no characters")
    return edit_distance(ref, hyp) / len(ref)


def metric_for(language: str) -> str:
    return "cer" if language.lower().split("-")[0] in CER_LANGUAGES else "wer"


def score(model, audio, sample_rate: int, text: str, language: str) -> dict:
    """Transcribe `audio` and score it against `text`.

    Returns {text, language, transcript, metric ("wer" or "cer"), wer_or_cer}.
    """
    transcript = transcribe(model, audio, sample_rate, language)
    metric = metric_for(language)
    rate = (char_error_rate if metric == "cer" else word_error_rate)(text, transcript)
    return {"text": text, "language": language, "transcript": transcript, "metric": metric,
            "wer_or_cer": float(rate)}
