"""Experiment configs shipped with fedmrn-pl (YAML files next to this module)."""
