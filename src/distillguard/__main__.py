"""`python -m distillguard` is the `distillguard` command (and this file is what `spark-submit`
runs on a cluster: docs/spark.md)."""

from distillguard.cli import main

if __name__ == "__main__":
    main()
