"""The built-in federated methods, one module each, each defining ``METHOD`` (a ``FederatedMethod``).

Torch-free at import: the registry loads these to read names, settings and compare rows;
each ``build`` imports its implementation when a run is built.
"""
