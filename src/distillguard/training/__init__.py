"""Offline training of the account scorer: simulated traffic replayed through the scan, features
at checkpoints, a LightGBM model and its calibrated thresholds. It sits above the scan (it
replays with it), so it lives outside `scoring/`, which the scan and the gateway import."""
