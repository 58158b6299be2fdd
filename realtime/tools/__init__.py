"""Generators of files derived from the code (run with ``python -m realtime.tools.NAME``)."""
