"""The scan and the ingest on Apache Spark (PySpark 4, `pip install 'distillguard[spark]'`).

Spark moves data and schedules tasks; every call is still analysed by the embedded engine's code
(`scan.replay.CallStage`, the readers and `events.store`'s row builder), run inside `mapInArrow`
over Arrow record batches, so both engines give the same verdicts (a test holds them equal).
"""
