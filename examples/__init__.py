"""Runnable examples of your own LightningModules trained federated: ``python -m examples.<name> [--tiny]``."""
