"""Signals: pure per-call detectors shared by the gateway and the batch scan."""
