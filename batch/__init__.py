"""``sonolens batch``: a whole archive of recordings through the pipeline, on a Dask cluster. Qt-free, torch-free.

``discover`` walks a folder for recordings (video files, DICOM cine loops and stills, folders of still images);
``task`` is what a Dask worker runs for one recording — the same ``pipeline.stream.build`` / ``run_to_end`` as
``sonolens run --max-rate`` (every frame, blocking queue) with the model loaded once per worker by a worker plugin;
``store`` keeps one result file per recording, written atomically, so a second run skips what is complete;
``table`` assembles them into one Parquet and CSV table (and ``metrics`` the AUC / accuracy per folder when labels
are given, ``labels``); ``summary`` writes a Markdown page with plots; ``cluster`` runs the tasks on an embedded
``LocalCluster`` or an existing scheduler, with a progress bar; ``cli`` is the command.

Workers open recordings by path: on a cluster of several machines every worker must see ROOT (and, with
``--frames``, OUT) at the same path — a shared filesystem.
"""
