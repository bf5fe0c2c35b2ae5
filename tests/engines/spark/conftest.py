"""One Spark session in local[2] mode for the in-process tests of a worker (the CLI joins it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from distillguard.cli import main


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    from distillguard.engines.spark.session import session

    spark = session("local[2]", app="distillguard-tests", quiet=True)
    yield spark
    spark.stop()


def invoke(*args: object) -> Result:
    """`distillguard ARGS` in this process (so it joins the test's Spark session)."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
