"""On PostgreSQL a trigger refuses UPDATE and DELETE of audit events, even by the table owner."""

from django.db import migrations

from apps.core.append_only import append_only_trigger

forwards, backwards = append_only_trigger(
    table="audit_auditevent",
    trigger="audit_event_append_only",
    function="audit_event_refuse_change",
    message="audit events are append-only",
)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
