from typing import Any

from django.http import HttpRequest


def current_hospital(request: HttpRequest) -> dict[str, Any]:
    return {"hospital": getattr(request, "hospital", None)}
