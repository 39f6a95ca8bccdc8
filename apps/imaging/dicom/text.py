"""Decode DICOM text values per Specific Character Set (0008,0005), with the fallbacks Chinese devices need.

Three things pydicom 3.0.2 does not do for us:

- With no Specific Character Set the text must be ASCII (ISO-IR 6), but Chinese devices often send UTF-8
  or GBK bytes anyway; pydicom then decodes them as Latin-1 without complaint. Here such values are
  decoded by trying UTF-8 and then GB 18030, and the guess is reported so QC can warn.
- A value that does not decode under the declared character set (a device declaring "ISO_IR 192" but
  sending GBK) gets the same treatment instead of replacement characters.
- For "ISO 2022 IR 58" pydicom keeps the ESC $ ) A designations in the decoded text; and devices often
  omit them. G1 is GB 2312 either way, so the escapes are dropped and the bytes decoded as GB 18030,
  its superset.
"""

import re
from collections.abc import Iterable, Sequence

from pydicom.charset import convert_encodings, decode_bytes, default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.valuerep import PersonName

# An ISO 2022 escape sequence: ESC, one to three intermediate bytes, a final byte (ISO/IEC 2022 13.1).
_ISO2022_ESCAPE = re.compile(rb"\x1b[\x20-\x2f]{1,3}[\x30-\x7e]")
_CHINESE_CODE_EXTENSIONS = frozenset({"ISO 2022 IR 58", "ISO 2022 GBK", "ISO 2022 58"})
# In this order, as UTF-8 rarely decodes GB 18030 bytes by accident while GB 18030 decodes most UTF-8.
_GUESSES = ("utf-8", "gb18030")
# Characters at which a code extension falls back to the first character set (PS3.5 6.1.2.5.3).
_TEXT_DELIMITERS = {ord(character) for character in "\n\r\t\f\\"}
# VRs whose text follows Specific Character Set (PS3.5 6.1.2.3); the first four may hold several values.
_MULTI_VALUED_TEXT_VRS = frozenset({"SH", "LO", "UC", "PN"})
_TEXT_VRS = _MULTI_VALUED_TEXT_VRS | {"ST", "LT", "UT"}
_CHARSET_TAG = BaseTag(0x00080005)


class TextDecoder:
    """Decodes the text values of one data set, deciding once which fallback encoding to use, if any.

    Build it with the declared Specific Character Set and every raw text value that will be decoded, so
    that the guess (UTF-8 or GB 18030) is the one that decodes all of them.
    """

    def __init__(self, declared: Sequence[str], raw_values: Iterable[bytes]) -> None:
        self.encodings: list[str] = convert_encodings(list(declared) or [""])
        self.chinese_iso2022 = any(term.strip() in _CHINESE_CODE_EXTENSIONS for term in declared)
        undecodable = [value for value in raw_values if self._strict(value, person_name=False) is None]
        self.fallback: str | None = _choose_fallback(undecodable) if undecodable else None

    @property
    def guessed(self) -> bool:
        """True when some value could not be decoded as declared and was decoded by the fallback."""
        return self.fallback is not None

    def decode(self, raw: bytes | str, *, person_name: bool = False) -> str:
        """Decode one raw value (or pass through one pydicom already decoded), without padding."""
        if isinstance(raw, str):
            return raw.strip()
        value = raw.rstrip(b"\x00")
        text = self._strict(value, person_name=person_name)
        if text is None:
            text = value.decode(self.fallback or "gb18030", errors="replace")
        return text.strip()

    def _strict(self, value: bytes, *, person_name: bool) -> str | None:
        if self.chinese_iso2022:
            try:
                return _ISO2022_ESCAPE.sub(b"", value).decode("gb18030")
            except UnicodeDecodeError:
                return None
        if b"\x1b" in value:
            # Code extensions: pydicom switches character sets per escape sequence (and per PN group).
            if person_name:
                return str(PersonName(value, encodings=self.encodings))
            return decode_bytes(value, self.encodings, _TEXT_DELIMITERS)
        if self.encodings[0] == default_encoding and not value.isascii():
            # Declared (or defaulted to) ASCII, yet 8-bit bytes: pydicom would show them as Latin-1.
            return None
        try:
            return value.decode(self.encodings[0])
        except (UnicodeDecodeError, LookupError):
            return None


def _choose_fallback(values: Sequence[bytes]) -> str:
    for codec in _GUESSES:
        try:
            for value in values:
                value.decode(codec)
        except UnicodeDecodeError:
            continue
        return codec
    return _GUESSES[-1]


def decode_text_elements(dataset: Dataset) -> bool:
    """Replace the raw text elements of `dataset` and its sequence items by their decoded values.

    Done once at parse time so that everything reading the data set (its DICOM JSON, the parsed fields)
    sees the same text. Text values over the deferral size stay raw and follow pydicom's own decoding;
    sequences are read whatever their size, as their items are where such text would be.
    Returns whether a fallback encoding was guessed anywhere.
    """
    return _decode_scope(dataset, inherited=())


def _decode_scope(root: Dataset, *, inherited: tuple[str, ...]) -> bool:
    """Decode one character set scope: `root` and its items, except items that declare their own."""
    declared = _declared(root) or inherited
    elements: list[tuple[Dataset, BaseTag, bytes, str]] = []
    own_scopes: list[Dataset] = []
    stack = [root]
    while stack:
        current = stack.pop()
        for tag in list(current.keys()):
            element = current.get_item(tag, keep_deferred=True)
            if element is None:
                continue
            vr = element.VR or _dictionary_vr(tag)
            if vr == "SQ":
                # Reading the element makes pydicom parse a defined-length (or deferred) sequence into items.
                for item in current[tag].value:
                    (own_scopes if _CHARSET_TAG in item else stack).append(item)
            elif isinstance(element, RawDataElement) and isinstance(element.value, bytes) and vr in _TEXT_VRS:
                elements.append((current, tag, element.value, vr))
    decoder = TextDecoder(declared, [value for _, _, value, _ in elements])
    for owner, tag, value, vr in elements:
        text = decoder.decode(value, person_name=vr == "PN")
        values: str | list[str] = text
        if vr in _MULTI_VALUED_TEXT_VRS and "\\" in text:
            values = [item.strip() for item in text.split("\\")]
        owner[tag] = DataElement(tag, vr, values)
    guessed = decoder.guessed
    for item in own_scopes:
        guessed = _decode_scope(item, inherited=declared) or guessed
    return guessed


def _declared(dataset: Dataset) -> tuple[str, ...]:
    if _CHARSET_TAG not in dataset:
        return ()
    value = dataset[_CHARSET_TAG].value
    if isinstance(value, str):
        return (value,) if value.strip() else ()
    return tuple(str(item) for item in value or ())


def _dictionary_vr(tag: BaseTag) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None
