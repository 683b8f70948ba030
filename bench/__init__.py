"""The benchmark suite (``sonolens bench``), in the steps a run takes; each module imports only the steps before it.

1. ``plan``: what a run measures — the sections, the plans (full / quick / smoke), ``Inputs``, ``display_path``;
2. ``inputs``: the inputs found or made — student files (a missing one prepared in a subprocess), sample clips,
   ../shared/videos, the clips re-encoded or rendered into the run's temp dir;
3. ``jobs``: the plan and its inputs as ``Job``s, the subprocess tasks of each section;
4. ``runner``: the jobs run, each measurement in a fresh ``python -m sonolens.bench.child`` (``child``: the
   measurements themselves, torch imported only by the tasks that need it; ``archive``: the batch section's, with
   ``procwatch`` for the CPU record of a group or tree of processes);
5. ``assemble``: the raw answers as the report's sections; ``targets``: its flat headline keys and their targets;
6. ``report``: ``BENCHMARKS.md`` from the report alone, one function per section, its cells from ``cells``;
   ``plots``: the PNG plots.

``entries`` reads the assembled report (contention flags, p50s) for the steps that build on it and those that
render it; ``env`` describes the machine and the versions; ``cli`` is the command line, which takes the steps in
order. Whether a figure was measured under contention is ``sonolens.pipeline.contention``'s verdict.
"""
