"""pytest options shared by tests/ and sim/."""

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run long verification marked 'slow'")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="long verification: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
