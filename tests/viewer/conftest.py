import pytest

from tests.viewer.helpers import ct_series_parts, study_store


@pytest.fixture
def ct_study(world, local_storage):
    """A three-slice CT study of the first hospital, stored through STOW-RS."""
    return study_store(world.first.hospital, ct_series_parts(3, rows=16, columns=16))
