"""Where the batch stages run. The embedded engine (`scan/`, `events/store.py`) is the default: one
machine, DuckDB and worker processes. `engines/spark` runs the same code on Apache Spark, for logs
that live in a data lake and do not fit one machine."""
