"""The benchmark of the presence server: ``python -m bench`` (see :mod:`bench.runner`)."""
