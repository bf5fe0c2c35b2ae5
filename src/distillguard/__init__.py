"""DistillGuard: detect and stop adversarial distillation of a language-model API."""

__version__ = "0.1.0"
