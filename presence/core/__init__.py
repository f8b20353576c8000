"""The licensing rules, without I/O: see :mod:`.seats` and :mod:`.rules`."""
