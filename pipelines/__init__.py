"""Runnable pipelines (python -m pipelines.<name>); they only wire transforms and connectors."""
