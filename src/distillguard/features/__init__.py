"""Per-account features: declared once (`catalog`), kept as mergeable state one call at a time
(`AccountWindow`, the gateway) or built in bulk from Arrow columns (`columnar`, the scan)."""

from distillguard.features.account_window import SIGNAL_NAMES, AccountWindow, feature_names
from distillguard.features.columnar import AccountColumns, build_windows, measure_columns

__all__ = [
    "SIGNAL_NAMES",
    "AccountColumns",
    "AccountWindow",
    "build_windows",
    "feature_names",
    "measure_columns",
]
