"""Starting (or joining) a Spark session for DistillGuard's jobs, with the settings that keep the
Spark engine's results equal to the embedded engine's."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# rows per Arrow batch handed to mapInArrow: the embedded engine's batch size
ARROW_BATCH_ROWS = 8192
LOCAL_SCHEMES = ("", "file")
# settings of a driver DistillGuard launches itself (spark-submit's own settings win there);
# --spark-conf overrides them
LAUNCH_DEFAULTS = {"spark.driver.memory": "4g", "spark.driver.maxResultSize": "2g"}


class SparkUnavailable(RuntimeError):
    """PySpark or a Java runtime is missing: the message names what to install."""


class SparkJobFailed(RuntimeError):
    """A Spark job failed (an unreadable file, an executor lost): the message is Spark's own
    reason, cut to the lines that name the file or the cause, without the JVM stack."""


def job_failure(error: BaseException) -> str:
    """Spark's reason for a failed job: its first line and the deepest 'Caused by', no stack frames."""
    text = str(getattr(error, "java_exception", None) or error)
    lines = [
        line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("at ")
    ]
    first = next((line for line in lines if not line.startswith(("py4j", ":"))), lines[0] if lines else text)
    causes = [line for line in lines if line.startswith("Caused by:")]
    reason = first if not causes or causes[-1] in first else f"{first} ({causes[-1]})"
    return reason[:1000]


@contextmanager
def spark_errors(what: str) -> Iterator[None]:
    """Turn a failed Spark job into `SparkJobFailed` naming ``what`` was running."""
    try:
        from py4j.protocol import Py4JJavaError
        from pyspark.errors.exceptions.base import PySparkException
    except ImportError:  # pragma: no cover - require_spark() runs first
        yield
        return
    try:
        yield
    except (Py4JJavaError, PySparkException) as error:
        raise SparkJobFailed(f"{what} failed on Spark: {job_failure(error)}") from error


def require_spark() -> None:
    """Fail with what to install when PySpark or Java is missing (before any Spark start-up)."""
    try:
        import pyspark  # noqa: F401
    except ImportError as error:
        raise SparkUnavailable("the Spark engine needs PySpark: pip install 'distillguard[spark]'") from error
    java_home = os.environ.get("JAVA_HOME")
    java = Path(java_home) / "bin" / "java" if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise SparkUnavailable(
            "the Spark engine needs a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless; "
            "or set JAVA_HOME)"
        )


def is_local(path: str) -> bool:
    """A path on this machine's file system (no scheme, or file://), as opposed to s3a://, hdfs://..."""
    scheme = urlparse(path).scheme
    # a Windows drive letter parses as a one-letter scheme
    return scheme in LOCAL_SCHEMES or len(scheme) == 1


def local_path(path: str) -> Path:
    return Path(urlparse(path).path) if path.startswith("file:") else Path(path)


def under_spark_submit() -> bool:
    """True in a driver started by `spark-submit` (its JVM is already running, with the master and
    settings the submitter chose)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def parse_conf(pairs: Sequence[str]) -> dict[str, str]:
    """``--spark-conf KEY=VALUE`` options as a dict; a malformed one is a ValueError naming it."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().startswith("spark."):
            raise ValueError(f"--spark-conf {pair!r}: expected spark.KEY=VALUE")
        out[key.strip()] = value
    return out


def session(
    master: str | None = None,
    *,
    app: str = "distillguard",
    partitions: int | None = None,
    quiet: bool = False,
    conf: dict[str, str] | None = None,
) -> SparkSession:
    """A Spark session: the active one if any; else a new one on ``master``, or on the master
    `spark-submit` was given, or ``local[2]``."""
    require_spark()
    from pyspark.sql import SparkSession

    # Python workers run this interpreter (with this install of distillguard) unless the cluster
    # names another; PySpark reads the variable, not a setting, when it starts them
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    active = SparkSession.getActiveSession()
    settings: dict[str, Any] = {
        # timestamps reach the Python workers as UTC instants, as the store holds them
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(ARROW_BATCH_ROWS),
        "spark.ui.showConsoleProgress": "false" if quiet else "true",
    }
    if partitions:
        settings["spark.sql.shuffle.partitions"] = str(partitions)
    if not under_spark_submit():
        # the driver receives every account's replay (tens of KiB each) and, in local mode, is
        # also the executor holding the stored results: Spark's default of 1 GiB loses them
        settings.update(LAUNCH_DEFAULTS)
    settings.update(conf or {})
    if active is not None:
        for key, value in settings.items():
            if key.startswith("spark.sql."):  # runtime settings; the rest belong to the submitter
                active.conf.set(key, value)
        return active
    builder = SparkSession.builder.appName(app)
    if master or not under_spark_submit():
        builder = builder.master(master or "local[2]")
    if not under_spark_submit():  # a cluster keeps its UI; a local run needs none
        builder = builder.config("spark.ui.enabled", "false")
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
