"""Scoring: account heuristics and a learned model combined into a calibrated risk with reasons."""
