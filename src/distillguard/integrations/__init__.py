"""Plug-ins that put DistillGuard's engine inside gateways other teams already run (LiteLLM)."""
