"""Helpers shared by the chart, pipeline e2e and control-plane test layers (never shipped)."""
