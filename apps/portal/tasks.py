"""Housekeeping of the portal (celery beat)."""

from celery import shared_task

from apps.portal.security import throttles_prune


@shared_task
def portal_throttles_prune() -> int:
    """Forget rate-limit counters older than a day (locks still running are kept)."""
    return throttles_prune()
