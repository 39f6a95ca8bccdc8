from collections.abc import Callable

from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse

from apps.tenants import context


class TenantContextMiddleware:
    """Run each request in one transaction in which the hospital and user can be set.

    Unlike ATOMIC_REQUESTS, a 4xx answer commits, so the audit events written on the way to a
    refusal (bad token, wrong code) are kept; a 5xx rolls everything back.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.hospital = None  # type: ignore[attr-defined]
        request.hospital_roles = set()  # type: ignore[attr-defined]
        try:
            with transaction.atomic():
                user = getattr(request, "user", None)
                if user is not None and user.is_authenticated:
                    context.bind_user(user.pk)
                response = self.get_response(request)
                if response.status_code >= 500 and not getattr(response, "commit_despite_error", False):
                    transaction.set_rollback(True)
                if len(connection.atomic_blocks) > 1:
                    # Inside an outer transaction (a test's): the settings would outlive this
                    # request's block. As the outermost block, its COMMIT or ROLLBACK ends them.
                    context.clear()
        finally:
            context.reset()
        return response
