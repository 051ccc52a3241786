"""Runnable pipelines (python -m pipelines.<name>); they only wire transforms and connectors."""
from pipelines.beam_noise import silence_beam_noise

silence_beam_noise()
