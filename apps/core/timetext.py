"""Times as the back office writes them where a reader may compare them with exported (UTC) data."""

from datetime import datetime, tzinfo

from django.utils import timezone


def time_with_offset(moment: datetime | None, zone: tzinfo | None = None) -> str:
    """``moment`` in ``zone`` (default: the current time zone, TIME_ZONE) with its UTC offset, as
    ``2026-11-30 05:08:08 +08:00``, so local time and UTC cannot be mistaken for each other."""
    if moment is None:
        return ""
    local = timezone.localtime(moment, zone)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} {offset[:3]}:{offset[3:]}"
