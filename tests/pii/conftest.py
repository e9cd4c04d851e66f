import pytest

from tests.servers import backend_params, open_test_store

BACKEND_PARAMS = backend_params()


@pytest.fixture(params=BACKEND_PARAMS)
async def db(request, tmp_path):
    database = await open_test_store(request.param, tmp_path, request)
    yield database
    await database.close()
