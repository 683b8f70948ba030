"""The B-mode phantom simulator (``sonolens simulate``, ``phantom:KIND`` sources)."""
