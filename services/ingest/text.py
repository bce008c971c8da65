"""Pure text functions of the ingest stage: normalisation, language, PII detection and masking."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers

# Newlines and tabs become spaces; other control and format characters (zero-width, BOM,
# bidi overrides) are dropped: they carry no meaning for a reply and can hide text.
_SPACE_LIKE = {"\n", "\r", "\t", "\u2028", "\u2029", "\x0b", "\x0c"}


@dataclass(frozen=True)
class Normalised:
    text: str
    original_length: int
    truncated: bool
    control_chars_removed: bool


def normalise(raw: str, max_chars: int) -> Normalised:
    text = unicodedata.normalize("NFKC", raw)
    out: list[str] = []
    removed = False
    for ch in text:
        if ch in _SPACE_LIKE:
            out.append(" ")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co"):
            removed = True
        else:
            out.append(ch)
    cleaned = re.sub(r" {2,}", " ", "".join(out)).strip()
    original_length = len(cleaned)
    truncated = original_length > max_chars
    if truncated:
        cleaned = head_and_tail(cleaned, max_chars)
    return Normalised(cleaned, original_length, truncated, removed)


TRUNCATION_MARK = " … "


def head_and_tail(text: str, max_chars: int) -> str:
    """The first quarter and the last three quarters of ``max_chars``: a rant states its request
    at the end ("… I have been waiting forever. Where is my order?"), which keeping only the
    start cut off."""
    if len(text) <= max_chars:
        return text
    room = max_chars - len(TRUNCATION_MARK)
    head = room // 4
    return text[:head] + TRUNCATION_MARK + text[len(text) - (room - head) :]


# -- language --------------------------------------------------------------------------------
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
# Full-width and CJK punctuation (？！，。、【】《》), typed with a Chinese input method (not the
# curly quotes, which English keyboards type too). NFKC turns the full-width forms into ASCII,
# so callers look for them in the raw text.
_CJK_PUNCTUATION = re.compile(r"[\u3001-\u303f\uff01-\uff0f\uff1a-\uff20]")
# A message with only punctuation typed this way leans Chinese, but not surely: reply keeps the
# conversation's language below SURE_LANGUAGE (0.7).
CJK_PUNCTUATION_CONFIDENCE = 0.5


@lru_cache(maxsize=1)
def _detector():  # type: ignore[no-untyped-def]
    # A handful of likely languages keeps lingua's memory small (~130 MB in high-accuracy mode,
    # which short chat messages need); "other" covers the rest.
    from lingua import Language, LanguageDetectorBuilder

    langs = [
        Language.ENGLISH, Language.CHINESE, Language.JAPANESE, Language.KOREAN,
        Language.FRENCH, Language.GERMAN, Language.SPANISH, Language.PORTUGUESE,
        Language.RUSSIAN, Language.ITALIAN, Language.INDONESIAN, Language.VIETNAMESE,
        Language.MALAY, Language.THAI, Language.ARABIC,
    ]  # fmt: skip
    return LanguageDetectorBuilder.from_languages(*langs).build()


# The least confidence detect_language gives 3+ Latin words that lingua ranks English first.
ENGLISH_SENTENCE_CONFIDENCE = 0.8


def detect_language(text: str, raw: str = "") -> tuple[str, float]:
    """zh | en | other, with a confidence.

    Script counts decide Chinese and code-mixed messages (the dominant script wins: one Han
    character weighs about as much as one English word); lingua decides among Latin-script
    languages, except for very short messages where it is unreliable and English is the
    best guess for this platform. A message with no words ("？？？", "7730192846。") leans
    Chinese when ``raw`` (the text before normalisation) has Chinese-input punctuation.
    """
    han = len(_HAN.findall(text))
    kana = len(_KANA.findall(text))
    hangul = len(_HANGUL.findall(text))
    latin_words = len(_LATIN_WORD.findall(text))
    if kana > 0 and kana >= han * 0.2:
        return "other", 0.9
    if hangul > han:
        return "other", 0.9
    if han and han >= latin_words:
        return "zh", min(1.0, 0.6 + 0.4 * han / (han + latin_words))
    if latin_words == 0:
        if han or _CJK_PUNCTUATION.search(raw or text):
            return "zh", CJK_PUNCTUATION_CONFIDENCE
        return "other", 0.0
    if latin_words < 3:
        return "en", 0.6
    from lingua import Language

    values = _detector().compute_language_confidence_values(text)
    best = values[0]
    if best.language == Language.ENGLISH:
        # lingua spreads its confidence over the Latin-script languages it knows ("how do i
        # get a refund" 0.36, "my parcel is late again" 0.39), but three or more Latin words,
        # more of them than Han characters, with English ranked first, is a sure English
        # sentence for a zh/en shop. Reply answers in the conversation's language below
        # SURE_LANGUAGE, so a customer who switched from Chinese to English kept getting
        # Chinese answers.
        return "en", max(float(best.value), ENGLISH_SENTENCE_CONFIDENCE)
    if best.language == Language.CHINESE:
        return "zh", float(best.value)
    if best.value < 0.6:  # unsure between Latin languages: English is the platform default
        return "en", float(best.value)
    return "other", float(best.value)


# -- PII -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PiiSpan:
    type: str  # phone | email | bank_card
    start: int
    end: int
    text: str


_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9.\-]{1,253}\.[A-Za-z]{2,24}")
# Chinese mobile: 11 digits starting 13-19, optionally +86/86 and separators.
_CN_MOBILE = re.compile(r"(?<![\d])(?:\+?86[\s\-]?)?1[3-9]\d[\s\-]?\d{4}[\s\-]?\d{4}(?![\d])")
# Chinese landline with an area code written with a separator, e.g. 010-12345678, 0755 8888 1234.
_CN_LANDLINE = re.compile(r"(?<![\d])0\d{2,3}[\s\-]\d{7,8}(?![\d])")
# Hotlines such as 400-800-1234 are business numbers, not customer PII: not matched.
_CARD = re.compile(r"(?<![\d])(?:\d[\s\-]?){12,18}\d(?![\d])")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def find_pii(text: str) -> list[PiiSpan]:
    """Phone numbers (CN, and any number written with +/00 that could be a phone: masking errs on
    the side of privacy), e-mail, Luhn-valid card numbers.

    Bare 10-digit numbers are order ids on this platform and are deliberately not phones.
    """
    spans: list[PiiSpan] = []
    for m in _EMAIL.finditer(text):
        spans.append(PiiSpan("email", m.start(), m.end(), m.group()))
    for m in _CARD.finditer(text):
        digits = re.sub(r"[\s\-]", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            spans.append(PiiSpan("bank_card", m.start(), m.end(), m.group()))
    for rx in (_CN_MOBILE, _CN_LANDLINE):
        for m in rx.finditer(text):
            spans.append(PiiSpan("phone", m.start(), m.end(), m.group()))
    if "+" in text or "00" in text:
        for match in phonenumbers.PhoneNumberMatcher(
            text, "CN", leniency=phonenumbers.Leniency.POSSIBLE
        ):
            raw = match.raw_string
            if raw.lstrip().startswith(("+", "00")):
                spans.append(PiiSpan("phone", match.start, match.end, raw))
    return _drop_overlaps(spans)


def _drop_overlaps(spans: list[PiiSpan]) -> list[PiiSpan]:
    """Keep the longest span where detectors overlap (a card is not also a phone)."""
    kept: list[PiiSpan] = []
    for span in sorted(spans, key=lambda s: (s.start, -(s.end - s.start))):
        if kept and span.start < kept[-1].end:
            if span.end - span.start > kept[-1].end - kept[-1].start:
                kept[-1] = span
            continue
        kept.append(span)
    return kept


MASKS = {"phone": "[PHONE]", "email": "[EMAIL]", "bank_card": "[CARD]"}


def mask(text: str, spans: list[PiiSpan]) -> str:
    out: list[str] = []
    pos = 0
    for span in sorted(spans, key=lambda s: s.start):
        out.append(text[pos : span.start])
        out.append(MASKS.get(span.type, "[PII]"))
        pos = span.end
    out.append(text[pos:])
    return "".join(out)
