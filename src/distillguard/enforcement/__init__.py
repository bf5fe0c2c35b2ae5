"""Enforcement: the policy as data, the live engine that applies it, and the shared state
(token buckets, ban list) it keeps. Detectors never enforce; this package does."""
