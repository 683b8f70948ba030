"""The benchmark suite (``sonolens bench``).

``cli`` (the command and ``run_bench``), ``plan`` (modes, inputs, jobs), ``runner`` (subprocesses), ``child``
(the measurements, run as ``python -m sonolens.bench.child``), ``assemble`` (report + headline targets),
``report`` (Markdown, plots), ``env`` (machine, versions), ``contention`` (what each timed task got from the CPU,
and whether its figure is a result).
"""
