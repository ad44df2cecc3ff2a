"""Mail lies about its charset; the customer's words must still come through."""

from __future__ import annotations

import pytest

from deskctl.mail.charsets import codec_for, decode_bytes

RUSSIAN = "Здравствуйте, у меня не работает принтер на третьем этаже."


def test_unlabelled_western_text_reads_as_windows_1252() -> None:
    assert decode_bytes("Grüße aus Köln, der Drucker ist kaputt.".encode("cp1252")) == (
        "Grüße aus Köln, der Drucker ist kaputt."
    )
    assert decode_bytes(b"caf\xe9") == "café"


def test_unlabelled_cyrillic_is_detected_when_charset_normalizer_is_installed() -> None:
    pytest.importorskip("charset_normalizer")
    assert decode_bytes(RUSSIAN.encode("cp1251")) == RUSSIAN


def test_utf8_mislabelled_as_latin1_is_still_read_as_utf8() -> None:
    assert decode_bytes("Priorität".encode(), "iso-8859-1") == "Priorität"


def test_gb2312_labels_decode_characters_only_gbk_has() -> None:
    text = "朱镕基"  # 镕 is not in GB2312; senders labelling GBK as GB2312 use it anyway
    assert decode_bytes(text.encode("gbk"), "gb2312") == text


def test_iso_2022_jp_is_not_mistaken_for_ascii() -> None:
    assert decode_bytes("日本語".encode("iso2022_jp"), "ISO-2022-JP") == "日本語"


@pytest.mark.parametrize("label", ["x-no-such-charset", "\udcff", "", None, "utf-8\x00"])
def test_unknown_or_junk_charset_labels_never_crash(label: str | None) -> None:
    assert codec_for(label) is None
    assert decode_bytes(b"plain ascii", label) == "plain ascii"
