import pytest

from tests.dicomweb.helpers import token_for


@pytest.fixture
def token(world, local_storage):
    """An API token of the first hospital, with objects stored on the local file system."""
    return token_for(world.first.hospital)
