"""End-to-end tests: every test here is marked ``e2e`` (deselect with ``-m "not e2e"``)."""

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _clear_emulator_faults(request):
    """Tests on a module's shared stack start and end with no injected provider faults."""
    if "stack" not in request.fixturenames:
        yield
        return
    stack = request.getfixturevalue("stack")
    stack.emulator.faults.reset()
    yield
    stack.emulator.faults.reset()
