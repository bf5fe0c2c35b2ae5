"""Report: the investigator's HTML view of a scan (top actors, evidence, timelines, examples)."""
