"""``sonolens batch ROOT --out DIR``: every recording under ROOT through the pipeline on a Dask cluster, into one table.

Exit status: 0 when every recording has a result (a recording that fails is a row with its reason, not a failure of
the batch); 2 with one line for bad input, or when the cluster lost recordings (run the command again: it resumes);
128 + N after signal N, once the cluster is closed and the table holds what finished.
"""

from __future__ import annotations

import argparse
import sys

from sonolens import RESEARCH_NOTICE
from sonolens.pipeline.errors import SonolensError
from sonolens.pipeline.shutdown import ShutdownSignals

EXTRA = "batch"
DESCRIPTION = f"""Run every recording under ROOT — video files, DICOM cine loops and stills, folders of still images —
through the same pipeline as 'sonolens run --max-rate' (every frame, the out-of-domain gate), one Dask task per
recording, and write one table (OUT/results.parquet and .csv), a summary page (OUT/summary.md) and, with --frames,
a per-frame CSV per recording. A second run with the same OUT skips recordings whose result is complete. Default: a
local Dask cluster of one single-threaded worker process per core. --scheduler runs on an existing cluster
('dask scheduler', 'dask worker'): workers open the recordings by path, so every worker must see ROOT (and OUT, with
--frames) at the same path — a shared filesystem — and have sonolens[batch] installed. {RESEARCH_NOTICE}"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sonolens batch", description=DESCRIPTION)
    p.add_argument("root", metavar="ROOT", help="folder of recordings (searched recursively)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; reused to resume)")
    p.add_argument("--labels", default=None, metavar="folders|FILE.csv",
                   help="ground truth: 'folders' (the first folder level under ROOT) or a CSV with path,label; adds "
                        "AUC and accuracy per folder with 95%% CIs")
    p.add_argument("--frames", action="store_true", help="also write one per-frame CSV per recording (OUT/frames/)")
    p.add_argument("--model", default=None, help="ONNX model file or bundled name (default: busi)")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:8786",
                   help="run on this Dask scheduler instead of a local cluster (needs a shared filesystem)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes of the local cluster (default: one per core)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="ONNX Runtime threads per worker (default 1)")
    p.add_argument("--no-gate", dest="gate", action="store_false", default=None,
                   help="research: score every frame, even those outside the model's training domain")
    p.add_argument("--config", default=None, metavar="FILE.yaml",
                   help="pipeline settings (as for 'sonolens run'); flags override it")
    p.add_argument("--retry-errors", action="store_true", help="process again the recordings that failed before")
    p.add_argument("--quiet", action="store_true", help="no progress and no summary lines")
    return p


def require_extra() -> None:
    """A one-line error naming the ``batch`` extra when Dask or pyarrow is missing."""
    import importlib

    for module in ("dask", "distributed", "pyarrow"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError:
            raise SonolensError(f"'batch' needs {module}, which is not installed; install it with: "
                                f"pip install 'sonolens[{EXTRA}]'") from None


def cli_main(argv: list[str]) -> int:
    """``sonolens batch``."""
    args = parser().parse_args(argv)
    require_extra()
    from .plan import prepare  # Dask and pyarrow: imported once they are known to be there
    from .run import run

    with ShutdownSignals() as signals:
        try:
            return run(prepare(args), signals)
        except KeyboardInterrupt:
            if signals.received is None:
                raise
            print("sonolens: batch: interrupted; what finished is stored: run the same command again to go on",
                  file=sys.stderr)
            return signals.exit_code or 130


__all__ = ["cli_main", "parser", "require_extra", "EXTRA"]
