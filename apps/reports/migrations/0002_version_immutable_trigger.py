"""On PostgreSQL a trigger refuses UPDATE and DELETE of report versions, even by the table owner.

The application role also lacks the privileges (see apps/tenants/rls.py); the trigger covers the
owner and anyone granted them later.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION report_version_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'report versions are immutable (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
DROP TRIGGER IF EXISTS report_version_immutable ON reports_reportversion;
CREATE TRIGGER report_version_immutable BEFORE UPDATE OR DELETE ON reports_reportversion
    FOR EACH ROW EXECUTE FUNCTION report_version_refuse_change();
"""

DROP = """
DROP TRIGGER IF EXISTS report_version_immutable ON reports_reportversion;
DROP FUNCTION IF EXISTS report_version_refuse_change();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("reports", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
