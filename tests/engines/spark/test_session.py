"""Starting Spark: what is checked before it starts, and what a missing piece says."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillguard.engines.spark import session as spark_session
from distillguard.engines.spark.session import SparkUnavailable, is_local, local_path, require_spark


@pytest.mark.parametrize(
    ("path", "local"),
    [
        ("/data/store", True),
        ("relative/store", True),
        ("file:///data/store", True),
        ("s3a://bucket/logs/store", False),
        ("abfss://logs@account.dfs.core.windows.net/store", False),
        ("hdfs://namenode:8020/store", False),
    ],
)
def test_local_and_remote_paths(path: str, local: bool) -> None:
    assert is_local(path) is local


def test_file_uri_becomes_a_path() -> None:
    assert local_path("file:///data/store") == Path("/data/store")
    assert local_path("data/store") == Path("data/store")


def test_missing_java_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    with pytest.raises(SparkUnavailable, match="openjdk-17-jre-headless"):
        require_spark()


def test_missing_java_on_path_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SparkUnavailable, match="Java 17"):
        require_spark()


def test_missing_pyspark_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_pyspark(name: str, *args: object, **kwargs: object) -> object:
        if name == "pyspark" or name.startswith("pyspark."):
            raise ImportError("No module named 'pyspark'")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_pyspark)
    with pytest.raises(SparkUnavailable, match=r"distillguard\[spark\]"):
        spark_session.require_spark()


def test_session_runs_workers_on_this_interpreter(spark: object) -> None:
    import sys

    import pyarrow as pa

    def where(batches):  # type: ignore[no-untyped-def]
        import sys as worker_sys

        for _ in batches:
            yield pa.RecordBatch.from_pydict({"python": [worker_sys.executable]})

    rows = spark.range(1).mapInArrow(where, "python string").collect()  # type: ignore[attr-defined]
    assert Path(rows[0].python).resolve() == Path(sys.executable).resolve()
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"  # type: ignore[attr-defined]


def test_spark_conf_pairs() -> None:
    from distillguard.engines.spark.session import parse_conf

    assert parse_conf(["spark.driver.memory=8g", "spark.sql.shuffle.partitions=400"]) == {
        "spark.driver.memory": "8g",
        "spark.sql.shuffle.partitions": "400",
    }
    assert parse_conf(["spark.executorEnv.X=a=b"]) == {"spark.executorEnv.X": "a=b"}
    for bad in ("spark.driver.memory", "driver.memory=8g", "=8g"):
        with pytest.raises(ValueError, match=r"expected spark\.KEY=VALUE"):
            parse_conf([bad])


def test_malformed_spark_conf_is_a_usage_error(tmp_path: Path) -> None:
    from tests.engines.spark.conftest import invoke

    (tmp_path / "store" / "day=2026-02-12").mkdir(parents=True)
    result = invoke(
        "scan", tmp_path / "store", "--engine", "spark", "--spark-conf", "memory=8g", "--out", tmp_path / "o"
    )
    assert result.exit_code == 2 and "--spark-conf 'memory=8g': expected spark.KEY=VALUE" in result.output
