"""The shared world: two hospitals with staff in every role, plus every platform duty.

The suite runs against PostgreSQL as the application role, with row-level security in force;
the test database is created and migrated as the owner role.
"""

from dataclasses import dataclass, field

import psycopg
import pytest
from django.conf import settings
from django.test.utils import setup_databases, teardown_databases
from django_otp import DEVICE_ID_SESSION_KEY

from apps.accounts.models import User
from apps.accounts.roles import HospitalRole, PlatformRole
from apps.tenants.context import hospital_context, reset
from apps.tenants.db_roles import as_table_owner
from apps.tenants.models import Hospital
from tests.factories import (
    HospitalFactory,
    MembershipFactory,
    PlatformRoleGrantFactory,
    UserFactory,
    confirmed_totp_device,
)

pytest_plugins = ["tests.storage_fixtures"]


def pytest_sessionstart(session: pytest.Session) -> None:
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.postgresql":
        pytest.exit("The test suite needs PostgreSQL (DATABASE_URL); it never falls back to SQLite.", returncode=3)
    try:
        psycopg.connect(
            host=database["HOST"], port=database["PORT"] or 5432, user=database["USER"], dbname="postgres",
            password=database.get("PASSWORD") or None, connect_timeout=5,
        ).close()  # fmt: skip
    except psycopg.OperationalError as error:
        pytest.exit(f"PostgreSQL is not reachable as {database['USER']}@{database['HOST']}: {error}", returncode=3)


@pytest.fixture(scope="session")
def django_db_setup(request, django_test_environment, django_db_blocker):
    """Create and migrate the test database as the table owner; tests then run as the app role."""
    with django_db_blocker.unblock(), as_table_owner():
        config = setup_databases(verbosity=0, interactive=False, keepdb=False)
    yield
    with django_db_blocker.unblock(), as_table_owner():
        teardown_databases(config, verbosity=0)


@pytest.fixture(autouse=True)
def _no_hospital_between_tests():
    reset()
    yield
    reset()


@pytest.fixture
def sign_in(client):
    """Sign a user in on the test client, past the second factor, as the login views would."""

    def _sign_in(user: User):
        device = confirmed_totp_device(user)
        client.force_login(user)
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()
        return client

    return _sign_in


@dataclass
class HospitalStaff:
    hospital: Hospital
    users: dict[str, User] = field(default_factory=dict)

    def __getitem__(self, role: str) -> User:
        return self.users[role]


@dataclass
class World:
    first: HospitalStaff
    second: HospitalStaff
    platform: dict[str, User]


def _staff_for(hospital: Hospital, prefix: str) -> HospitalStaff:
    staff = HospitalStaff(hospital)
    with hospital_context(hospital):
        for role in HospitalRole:
            user = UserFactory(username=f"{prefix}-{role.value}", home_hospital=hospital)
            MembershipFactory(hospital=hospital, user=user, role=role)
            staff.users[role.value] = user
    return staff


@pytest.fixture
def world(db) -> World:
    first = HospitalFactory(code="first", name_zh="第一人民医院", institution_name="FIRST PEOPLES HOSPITAL")
    second = HospitalFactory(code="second", name_zh="第二人民医院", institution_name="SECOND PEOPLES HOSPITAL")
    platform = {}
    for role in PlatformRole:
        user = UserFactory(username=f"platform-{role.value}")
        PlatformRoleGrantFactory(user=user, role=role)
        platform[role.value] = user
    return World(_staff_for(first, "first"), _staff_for(second, "second"), platform)


@pytest.fixture
def owner_connection():
    """A separate connection as the table owner, for tests that tamper with rows directly."""
    database = settings.DATABASES["default"]
    owner = settings.DATABASE_OWNER
    assert owner is not None, "the test settings name the owner role"
    connection = psycopg.connect(
        host=database["HOST"], port=database["PORT"] or 5432, dbname=database["NAME"], user=owner["USER"],
        password=owner.get("PASSWORD") or None, autocommit=True,
    )  # fmt: skip
    yield connection
    connection.close()
