"""`distillguard train`: rebuild the shipped models (signal classifiers, account risk model)."""

from __future__ import annotations

import click

from distillguard.signals.training import train_signals_command
from distillguard.training.scorer import train_scorer_command


@click.group("train")
def train() -> None:
    """Train the shipped models from the development corpora (reproducible; see docs)."""


train.add_command(train_signals_command, "signals")
train.add_command(train_scorer_command, "scorer")
