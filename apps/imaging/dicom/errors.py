"""The one exception the DICOM parser raises, so callers can store a stable code and a bilingual reason."""


class DicomRejected(Exception):
    """An object that cannot be accepted at all (not Part 10, truncated, malformed, missing or bad UIDs).

    `code` is stable and goes into `StagedObject.error_code`; the messages go to staff and senders.
    Messages never carry patient data: they name attributes by keyword and give byte counts, never values.
    """

    def __init__(self, code: str, *, message_zh: str, message_en: str) -> None:
        super().__init__(f"{code}: {message_en}")
        self.code = code
        self.message_zh = message_zh
        self.message_en = message_en
