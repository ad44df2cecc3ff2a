"""Turning bytes of unknown or mislabelled charset into text without crashing.

Real mail lies about its charset: GB2312 that is really GBK, ``iso-8859-1`` that
is really windows-1252, names no codec knows, or no label at all. Every decode in
the mail layer goes through :func:`decode_bytes` so those lies are handled once.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

# Labels whose real-world content is a superset encoding; decoding with the
# superset is what mail clients do and never loses a character.
_SUPERSETS: dict[str, str] = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "gb_2312-80": "gb18030",
    "euc-cn": "gb18030",
    "cn-gb": "gb18030",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "windows-31j": "cp932",
    "iso-2022-jp": "iso2022_jp_ext",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "unicode-1-1-utf-7": "utf-7",
    "x-unknown": "utf-8",
    "unknown-8bit": "utf-8",
    "utf8": "utf-8",
    "x-user-defined": "cp1252",
}


@lru_cache(maxsize=256)
def codec_for(label: str | None) -> str | None:
    """Python codec name for a MIME charset label, or None when nobody knows it.

    Cached because the same few labels repeat in every message.
    """
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    name = name.split("*", 1)[0]  # RFC 2231 language suffix: utf-8*en
    if not name:
        return None
    name = _SUPERSETS.get(name, name)
    try:
        return codecs.lookup(name).name
    except (LookupError, UnicodeError, ValueError):  # junk labels, surrogates, NULs
        return None


def decode_bytes(data: bytes, declared: str | None = None, fallbacks: Iterable[str] = ()) -> str:
    """Decode ``data`` with the best guess; never raises.

    Order: UTF-8 and the declared charset (strict), the caller's fallbacks (charsets
    declared elsewhere in the same message), a statistical detector for longer
    texts, and finally the declared charset or windows-1252 with replacement
    characters, so a human can still read most of it.
    """
    if data.isascii() and (declared is None or codec_for(declared) not in _ASCII_UNSAFE):
        return data.decode("ascii")
    # UTF-8 goes first: valid multi-byte UTF-8 is almost never an accident, while
    # mail labelled us-ascii or iso-8859-1 that really is UTF-8 is common. 7-bit
    # stateful codecs (ISO-2022-JP, UTF-7) must win over it, or they'd read as ASCII.
    first = (declared, "utf-8") if codec_for(declared) in _ASCII_UNSAFE else ("utf-8", declared)
    tried: list[str] = []
    for label in (*first, *fallbacks):
        codec = codec_for(label)
        if codec is None or codec in tried:
            continue
        tried.append(codec)
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
    if max(map(len, _HIGH_RUN.findall(data)), default=0) <= 2:
        # Accented letters scattered between ASCII: Western European text.
        # Statistical detectors misread such short evidence as CJK.
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            pass
    guessed = _detect(data)
    if guessed is not None:
        return guessed
    return data.decode(tried[0] if tried else "cp1252", errors="replace")


_HIGH_RUN = re.compile(rb"[\x80-\xff]+")
# Codecs where pure-ASCII bytes do not mean ASCII text (shift sequences, base64-ish).
_ASCII_UNSAFE = frozenset({"utf-7", "iso2022_jp_ext", "iso2022_jp", "iso2022_jp_2", "hz"})


def _detect(data: bytes) -> str | None:
    """Ask charset-normalizer when it is installed; it is optional, not required."""
    if len(data) < 8:
        return None
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - optional dependency
        return None
    best = from_bytes(data).best()
    return str(best) if best is not None else None


_MULTIBYTE = frozenset(
    {"gb18030", "gbk", "big5", "big5hkscs", "cp950", "cp932", "shift_jis", "euc_jp", "cp949"}
    | {"euc_kr", "johab"}
)


# What a raw 8-bit header is likely written in when the message declares one
# charset of a language: the 7-bit ISO-2022 forms cannot carry raw bytes at
# all, so a Japanese mail's raw header is Shift_JIS (CP932) or EUC-JP, and so on.
_FAMILIES: dict[str, tuple[str, ...]] = {
    "iso2022_jp_ext": ("cp932", "euc_jp"),
    "iso2022_jp": ("cp932", "euc_jp"),
    "iso2022_jp_2": ("cp932", "euc_jp"),
    "cp932": ("euc_jp",),
    "shift_jis": ("cp932", "euc_jp"),
    "euc_jp": ("cp932",),
    "big5": ("big5hkscs", "cp950"),
    "cp950": ("big5hkscs",),
    "big5hkscs": ("cp950",),
    "gb18030": ("big5hkscs",),
    "hz": ("gb18030",),
    "iso2022_kr": ("cp949",),
    "cp949": ("johab",),
    "euc_kr": ("cp949",),
}

# Letters of the CJK scripts (kana, ideographs, hangul). A wrong double-byte
# codec that happens to accept the bytes yields half-width katakana, symbols
# and rare compatibility characters instead.
_CJK_LETTER = re.compile(r"[\u3041-\u3096\u30a1-\u30fa\u4e00-\u9fff\uac00-\ud7a3]")


def _family(codecs_: Sequence[str]) -> list[str]:
    """The declared codecs, each followed by the ones its language also uses."""
    out: dict[str, None] = {}
    for codec in codecs_:
        out.setdefault(codec, None)
        for relative in _FAMILIES.get(codec, ()):
            out.setdefault(relative, None)
    return list(out)


def decode_header_bytes(data: bytes, candidates: Sequence[str]) -> str:
    """Decode a raw 8-bit header (no RFC 2047) using charsets the message declares.

    Single-byte charsets accept any bytes, so a declared iso-8859-1 would always
    "succeed" on GB2312 text. When every run of high bytes has even length, as
    double-byte CJK text does and accented European text rarely does, declared
    multi-byte charsets (and their relatives, see ``_FAMILIES``) are tried
    before the single-byte ones, and of those that decode cleanly the one
    giving the most CJK letters wins: EUC-JP bytes also "decode" as CP932
    half-width katakana.
    """
    paired = all(len(run) % 2 == 0 for run in _HIGH_RUN.findall(data))
    codecs_ = _family([codec for label in candidates if (codec := codec_for(label))])
    if paired:
        codecs_.sort(key=lambda codec: codec not in _MULTIBYTE)
        best = _best_multibyte(data, [codec for codec in codecs_ if codec in _MULTIBYTE])
        if best is not None:
            return best
    return decode_bytes(data, None, codecs_)


def _best_multibyte(data: bytes, codecs_: Sequence[str]) -> str | None:
    """The clean decode with the most CJK letters; None if none is clean."""
    if data.isascii() or not codecs_:
        return None
    try:  # valid UTF-8 is never an accident (see decode_bytes)
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    best: tuple[int, str] | None = None
    for codec in codecs_:
        try:
            text = data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
        score = len(_CJK_LETTER.findall(text))
        if best is None or score > best[0]:
            best = (score, text)
    return best[1] if best else None
