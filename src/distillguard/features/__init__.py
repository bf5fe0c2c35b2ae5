"""Per-account features: mergeable reducers and the `AccountWindow` built from them."""

from distillguard.features.account_window import SIGNAL_NAMES, AccountWindow, feature_names
from distillguard.features.bulk import build_daily_windows, build_windows, merge_windows

__all__ = [
    "SIGNAL_NAMES",
    "AccountWindow",
    "build_daily_windows",
    "build_windows",
    "feature_names",
    "merge_windows",
]
