from celery import shared_task

from apps.reports.publication import manifest_complete_studies_publish
from apps.tenants.context import hospital_context
from apps.tenants.models import Hospital


@shared_task(acks_late=True)
def publication_manifest_sweep() -> int:
    """Publish studies whose images have met their manifest (periodic; idempotent)."""
    marked = 0
    for hospital in Hospital.objects.all():
        with hospital_context(hospital):
            marked += manifest_complete_studies_publish(hospital=hospital)
    return marked
