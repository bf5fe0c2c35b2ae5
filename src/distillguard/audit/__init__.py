"""Audit: measure a model's refusals, framing asymmetry and withdrawn answers on sensitive topics
through any OpenAI-compatible endpoint, and compare models side by side."""
