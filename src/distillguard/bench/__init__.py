"""Benchmarks: how well DistillGuard separates distillers from legitimate customers (`bench detect`),
next to reference baselines that show the benchmark is not trivial."""
