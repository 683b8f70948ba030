"""``sonolens fit-ood``: the command line of ``training.ood.fit_and_attach``.

``--candidate auto`` picks the score by the cross-hospital rule (``training.ood_eval.select_cross_hospital``:
selected on the far selection sets — X-rays, photographs, noise —, judged by the share flagged at the threshold
for a hospital the gate has not seen; the non-breast clips are not read) and sets that threshold
(``--cross-hospital``, default ``ood_eval.CROSS_TARGET``).
"""

from __future__ import annotations

import argparse
import sys

from sonolens.pipeline.errors import ConfigError

from .ood import (
    DEFAULT_CANDIDATE,
    DEFAULT_TARGET_FLAGGED,
    fit_and_attach,
    gate_split,
    parse_candidate,
    resolve_model,
    shared_root,
    training_split,
)

AUTO = "auto"


def _fit_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens fit-ood",
        description="Fit the out-of-domain gate of an ONNX model on the train rows of its gate split (a breast "
                    "model: BUSI + BUS-UCLM, every scanner sonolens trains on) and the threshold on its val rows, "
                    "and the probability temperature on the val rows of the model's own split; write a copy with "
                    "an 'ood_score' output and both in its metadata (ModelSpec.ood, ModelSpec.temperature). "
                    "Research use only.")
    p.add_argument("--model", required=True,
                   help="ONNX model file (or a bundled name: busi, busi-mnv3, busi-uclm, chest-xray)")
    p.add_argument("--out", required=True, help="output ONNX file (may be --model itself: the gate is replaced)")
    p.add_argument("--data", default=None, help="dataset root (default: ../shared/datasets/<the model's dataset>)")
    p.add_argument("--split-file", default=None,
                   help="split CSV of the temperature (and of the gate too, unless --gate-split-file is given) "
                        "(default: the model's split in training/split_csv)")
    p.add_argument("--gate-data", default=None, help="dataset root of --gate-split-file (default: as --data, or "
                                                     "../shared/datasets for the default gate split)")
    p.add_argument("--gate-split-file", default=None,
                   help="split CSV whose train rows fit the gate and whose val rows set its threshold (default: "
                        "--split-file when given, else the model's gate split: busi_uclm.csv for a breast model)")
    p.add_argument("--candidate", default=DEFAULT_CANDIDATE,
                   help="score to fit, METHOD[k]@FEATURE:STAT,... (default %(default)s; see 'sonolens ood-eval' "
                        "for the measured table), e.g. mahalanobis@pooled:vector, knn5@prelogits:vector, energy; "
                        f"or '{AUTO}': the cross-hospital rule picks it from the candidates of the model's student "
                        "and the threshold is the cross-hospital one (needs a gate split of two datasets)")
    p.add_argument("--max-bank", type=int, default=0, help="k-NN: keep at most this many training features")
    p.add_argument("--target-flagged", type=float, default=DEFAULT_TARGET_FLAGGED,
                   help="share of in-domain validation images above the threshold (default %(default)s)")
    p.add_argument("--cross-hospital", type=float, default=None, metavar="SHARE",
                   help="set the threshold for hospitals the gate has not seen: fitted on each dataset of the gate "
                        "split alone, at most SHARE of the other's images flagged, carried to the full fit (never "
                        "below the --target-flagged threshold), e.g. 0.05")
    p.add_argument("--no-temperature", action="store_true", help="keep the file's temperature")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default 1)")
    return p


def cli_main(argv: list[str]) -> int:
    from sonolens.models.onnx_export import read_spec

    args = _fit_parser().parse_args(argv)
    if not 0 < args.target_flagged < 1:
        raise ConfigError("--target-flagged must lie in (0, 1)")
    if args.cross_hospital is not None and not 0 < args.cross_hospital < 1:
        raise ConfigError("--cross-hospital must lie in (0, 1)")
    if args.candidate != AUTO:
        parse_candidate(args.candidate)  # a bad name fails before any work
    elif args.gate_split_file or args.split_file:
        raise ConfigError(f"--candidate {AUTO} chooses on the model's own gate split: leave out --split-file and "
                          "--gate-split-file")
    model = resolve_model(args.model)
    spec = read_spec(model)
    data, split_file = args.data, args.split_file
    if data is None or split_file is None:
        root, csv = training_split(spec, shared_root())
        data, split_file = data or root, split_file or csv
    gate_data, gate_file = args.gate_data, args.gate_split_file
    if gate_file is None:
        if args.split_file is not None:
            gate_data, gate_file = gate_data or data, split_file
        else:
            root, csv = gate_split(spec, shared_root())
            gate_data, gate_file = gate_data or root, csv
    candidate, cross = args.candidate, args.cross_hospital
    if candidate == AUTO:
        candidate, cross = _auto_candidate(model, cross)
    res = fit_and_attach(model, args.out, data, split_file, gate_root=gate_data or data, gate_csv=gate_file,
                         candidate=candidate, max_bank=args.max_bank, target_flagged=args.target_flagged,
                         calibrate=not args.no_temperature, threads=args.threads, cross_target=cross)
    print(f"wrote {args.out}: ood_score = {res.record['candidate']}, threshold {res.threshold:.4g} "
          f"({100 * res.record['val_flagged']:.1f} % of {res.record['n_val']} val images above it), "
          f"temperature {res.temperature:.4f}")
    return 0


def _auto_candidate(model, cross: float | None) -> tuple[str, float]:
    """The cross-hospital rule's candidate on ``model``'s gate split (``ood_eval.method_table`` without the
    report-only sets), chosen at the cross-hospital share ``cross`` (default ``CROSS_TARGET``) it is then
    thresholded at."""
    from .ood_eval import CROSS_TARGET, method_table

    target = CROSS_TARGET if cross is None else cross
    sel = method_table(model, shared_root(), skip_report_only=True, cross_target=target,
                       log=lambda s: print(s, file=sys.stderr))
    if not sel.get("cross_hospital"):
        raise ConfigError(f"--candidate {AUTO} needs a gate split of two or more datasets")
    chosen = sel["cross_hospital"]["chosen"]
    print(f"cross-hospital rule: {chosen}", file=sys.stderr)
    return chosen, target


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli_main(sys.argv[1:]))
