import pytest

from voxd.store.db import Database


@pytest.fixture
async def db(tmp_path):
    database = await Database.open(tmp_path / "voxd.db")
    yield database
    await database.close()
