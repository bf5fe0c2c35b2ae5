"""Events: every source turned into the canonical call record (shared/spec/events.md)."""
