"""The benchmark suite (``sonolens bench``)."""
