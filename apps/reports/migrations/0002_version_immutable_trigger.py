"""On PostgreSQL a trigger refuses UPDATE and DELETE of report versions, even by the table owner."""

from django.db import migrations

from apps.core.append_only import append_only_trigger

forwards, backwards = append_only_trigger(
    table="reports_reportversion",
    trigger="report_version_immutable",
    function="report_version_refuse_change",
    message="report versions are immutable",
)


class Migration(migrations.Migration):
    dependencies = [("reports", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
