from typing import ClassVar

from rest_framework.request import Request
from rest_framework.response import Response

from apps.tenants.api import HospitalAPIView


class HospitalInfoView(HospitalAPIView):
    """``GET /api/<code>/``: which hospital and token the caller is using (a connection check)."""

    required_scopes: ClassVar[dict[str, str]] = {"GET": "read"}

    def get(self, request: Request, hospital_code: str) -> Response:
        return Response(
            {
                "hospital": {
                    "code": self.hospital.code,
                    "name_zh": self.hospital.name_zh,
                    "name_en": self.hospital.name_en,
                    "institution_name": self.hospital.institution_name,
                },
                "token": {"name": self.token.name, "scopes": self.token.scopes},
            }
        )
