"""Kubecost/OpenCost Allocation API -> cloudtuner_kubecost_* Prometheus metrics."""

__version__ = "0.1.0"
