"""Latency and throughput measurement, budgets, reports and plots (torch-free)."""
