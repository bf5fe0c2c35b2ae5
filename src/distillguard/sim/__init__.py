"""Labelled benchmark traffic from real public prompts: benign populations and distillation tactics."""
