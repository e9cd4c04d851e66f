import pytest

from tests.servers import open_test_store

# every test taking ``db`` runs on both backends; the PostgreSQL runs are the cluster stage's
BACKEND_PARAMS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.cluster)]


@pytest.fixture(params=BACKEND_PARAMS)
async def db(request, tmp_path):
    database = await open_test_store(request.param, tmp_path, request)
    yield database
    await database.close()
