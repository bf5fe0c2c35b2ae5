"""The investigators' web interface over the case store."""
