"""``sonolens view [SOURCE] [--model PATH] [options]``: the live overlay viewer.

Mistakes on the command line (a study without a participant, an output folder that does not exist, no display)
are one line on stderr and exit code 2, before any window opens. A source or model that cannot be opened is shown
in an error dialog; with the automation flags (``--exit-after-frames``, ``--screenshot``, ``--report``) it is
also printed as one line and the exit code is non-zero, so scripts and CI see it.

Automation: ``--exit-after-frames N --screenshot OUT.png --report OUT.json`` runs the real window (on the
offscreen platform when there is no display), grabs the whole window after the N-th frame is painted and
writes the report. ``--report`` turns on ``--selfcheck`` (``--no-selfcheck`` to keep the frame unpadded), so the
report always has a ``capture_to_pixels`` figure measured from the window's pixels.

Ctrl-C and SIGTERM take the window's normal way out — study log end record, recordings, screenshot, report — and
the exit code is 128 + N (130, 143); a second signal while that runs is ignored (``app.signals``). A study log that
cannot be written (a full disk) ends the session with its end record, the error shown in the window, one line on
stderr and exit code 2. ``--log`` naming a file that already holds a session is refused: one session per log.

Several SOURCEs (2 to ``MAX_STREAMS``) open one window with a grid, one stream in each cell (``grid.GridWindow``);
more are refused in one line (exit 2), and so are ``--study`` and ``--hold`` with several sources. The pipeline's
settings apply to every stream; ``--csv F.csv`` writes each stream's ``F_k.csv`` and ``F_k_display.csv``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
from pathlib import Path

from sonolens import RESEARCH_NOTICE
from sonolens.pipeline.errors import ConfigError
from sonolens.study.log import CONDITIONS, check_new_log

MAX_STREAMS = 4  # streams one window shows (a 2×2 grid)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens view",
        description=f"Live ultrasound AI overlay viewer (PyQt6). {RESEARCH_NOTICE} Press F1 in the window for "
                    "keyboard shortcuts.")
    p.add_argument("source", nargs="*", metavar="SOURCE",
                   help="video file, camera:N, /dev/videoN, stream URL, image, folder, or phantom:KIND (default: the "
                        f"bundled sample clip); 2 to {MAX_STREAMS} SOURCEs: a grid, one stream in each cell")
    p.add_argument("--model", default=None,
                   help="ONNX model file or bundled name (busi, busi-mnv3, busi-uclm, chest-xray); 'off' for none "
                        "(default: busi)")
    p.add_argument("--roi", default=None, help="x,y,w,h of the ultrasound image (default: detected automatically)")
    p.add_argument("--dwell", type=float, default=None, metavar="S",
                   help="a folder of images: show each for S seconds (default 1)")
    p.add_argument("--hold", action="store_true", default=None,
                   help="a folder of images: hold each image until you advance it (Right or .), instead of --dwell")
    p.add_argument("--config", default=None,
                   help="YAML file of pipeline settings, the same file 'sonolens run' reads (flags override it)")
    p.add_argument("--threads", type=int, default=None,
                   help="ONNX Runtime intra-op threads (default 1: the viewer shares the CPU with decoding, "
                        "drawing and the display server; 0 = ORT's default, one per core)")
    p.add_argument("--loop", action="store_true", default=None, help="restart the file at its end (L toggles)")
    p.add_argument("--speed", type=float, default=None, help="playback speed factor ([ and ] change it)")
    p.add_argument("--max-rate", dest="realtime", action="store_false", default=None,
                   help="read files as fast as possible instead of at their frame rate")
    p.add_argument("--ema", type=float, default=None, help="probability smoothing factor in [0, 1)")
    p.add_argument("--decision", dest="decision_s", type=float, default=None, metavar="SECONDS",
                   help="video-level decision: probabilities smoothed with this time constant, hysteresis on the "
                        "shown class (default: off)")
    p.add_argument("--no-cam", dest="cam", action="store_false", default=None, help="no Grad-CAM output (no heat map)")
    p.add_argument("--no-gate", dest="gate", action="store_false", default=None,
                   help="research: predict on every frame, even outside the model's training domain or without an "
                        "image (the score and the state are still shown and logged; the window says the gate is off)")
    p.add_argument("--no-heatmap", dest="heatmap", action="store_false", help="start with the heat map hidden")
    p.add_argument("--opacity", type=float, default=0.4, help="heat map opacity in [0, 1] (default 0.4)")
    p.add_argument("--colormap", default="jet", help="heat map colormap: jet, inferno, turbo, viridis, hot")
    g = p.add_argument_group("window")
    g.add_argument("--screen", type=int, default=None, metavar="N", help="open on screen N (0 = primary)")
    g.add_argument("--fullscreen", action="store_true", help="start in full screen (F11 toggles)")
    g.add_argument("--present", action="store_true",
                   help="presentation mode for demos: the image, class bars, heat map and state only (no engineering "
                        "HUD, no overlay controls, no latency stamp strip); combine with --fullscreen")
    g.add_argument("--size", default="1280x800", help="window size WxH (default 1280x800)")
    g.add_argument("--snapshot-dir", default=".", help="folder for snapshots (S)")
    g.add_argument("--record-dir", default=".", help="folder for recordings (R)")
    s = p.add_argument_group("study mode")
    s.add_argument("--study", action="store_true", help="reader-study session: log every displayed frame and call")
    s.add_argument("--participant", default=None, help="participant ID (required with --study)")
    s.add_argument("--condition", default=None, choices=CONDITIONS,
                   help="ai: overlay shown; blinded: model runs and is logged, nothing shown; off: no model")
    s.add_argument("--log", default=None, metavar="PATH",
                   help="study log (JSON Lines, one session per file: an existing log is refused; "
                        "default study_<participant>_<condition>_<time>.jsonl)")
    a = p.add_argument_group("self-check and automation")
    a.add_argument("--selfcheck", action="store_true", default=None,
                   help="stamp the capture time into each frame and read it back from the window's pixels "
                        "(capture-to-pixels latency); on by default with --report")
    a.add_argument("--no-selfcheck", dest="selfcheck", action="store_false", help="never stamp frames")
    a.add_argument("--exit-after-frames", type=int, default=None, metavar="N",
                   help="quit after N frames were displayed (or at the end of the source)")
    a.add_argument("--exit-after-seconds", type=float, default=None, metavar="S", help="quit after S seconds")
    a.add_argument("--screenshot", default=None, metavar="OUT.png", help="grab the whole window when quitting")
    a.add_argument("--report", default=None, metavar="OUT.json",
                   help="write display FPS, frames displayed/dropped, latency incl. capture_to_pixels, the CPU "
                        "contention record and the pipeline's report when quitting (a summary is printed too)")
    a.add_argument("--csv", default=None, metavar="FRAMES.csv",
                   help="per-frame CSV: the pipeline's stages in FRAMES.csv (as 'sonolens run --csv'), and each "
                        "painted frame's display latencies in FRAMES_display.csv")
    return p


def _grid_sources(args: argparse.Namespace) -> tuple[str, ...]:
    """The SOURCEs of a grid (two or more), else (); a one-line ``ConfigError`` for what the grid cannot do. ``args``
    keeps the first SOURCE only: the pipeline's settings are resolved once, for every stream alike."""
    given = [args.source] if isinstance(args.source, str) else list(args.source or [])
    args.source = given[0] if given else None
    if len(given) < 2:
        return ()
    if len(given) > MAX_STREAMS:
        raise ConfigError(f"{len(given)} sources: the viewer shows at most {MAX_STREAMS} streams in one window "
                          "('sonolens run' takes more)")
    if args.study or args.participant or args.condition or args.log:
        raise ConfigError("--study reads one source: several sources (a grid) are not a study session")
    if args.hold:
        raise ConfigError("--hold waits for Right to advance one source's images: the grid has no such key (use "
                          "--dwell S)")
    return tuple(given)


def _check_out(path: str | None, what: str) -> None:
    if path and not Path(path).expanduser().resolve().parent.is_dir():
        raise ConfigError(f"{what}: folder does not exist: {Path(path).parent}")


def options_from_args(args: argparse.Namespace):
    """Validate the command line (user mistakes raise ConfigError) and build ``ViewerOptions``."""

    from .options import StudyOptions, ViewerOptions

    sources = _grid_sources(args)
    automation = bool(args.exit_after_frames or args.exit_after_seconds or args.screenshot or args.report)
    if args.exit_after_frames is not None and args.exit_after_frames < 1:
        raise ConfigError("--exit-after-frames must be at least 1")
    if not 0.0 <= args.opacity <= 1.0:
        raise ConfigError(f"--opacity must be in [0, 1], got {args.opacity}")
    from sonolens.pipeline.overlay import COLORMAPS

    if args.colormap not in COLORMAPS:
        raise ConfigError(f"--colormap must be one of {', '.join(COLORMAPS)}, got {args.colormap!r}")
    from sonolens.pipeline.outputs import check_writable

    for path, what in ((args.screenshot, "--screenshot"), (args.report, "--report")):
        if path:  # checked now (a read-only folder), not found out after the session: one line, exit 2
            _check_out(path, what)
            check_writable(path, what)
    for d, name in ((args.snapshot_dir, "--snapshot-dir"), (args.record_dir, "--record-dir")):
        if not Path(d).expanduser().is_dir():
            raise ConfigError(f"{name}: not a folder: {d}")
    # the pipeline settings: the same schema, file and resolution as 'sonolens run' (pipeline.config), view's defaults
    from sonolens.pipeline.run_cli import resolve_args

    pipe_cfg = resolve_args(args, "view", require_source=False).pipeline
    from .hud import display_csv_path

    display_csv = display_csv_path(pipe_cfg.csv)
    for path, what in ((pipe_cfg.csv, "--csv"), (display_csv, "--csv (display)")):
        if path:
            _check_out(path, what)
            check_writable(path, what)
    model: str | None = pipe_cfg.model
    study = None
    if args.study or args.participant or args.condition or args.log:
        if not args.study:
            raise ConfigError("--participant/--condition/--log need --study")
        if not args.participant:
            raise ConfigError("--study needs --participant ID")
        if not args.condition:
            raise ConfigError(f"--study needs --condition ({' | '.join(CONDITIONS)})")
        log = args.log or f"study_{args.participant}_{args.condition}_{_dt.datetime.now():%Y%m%d_%H%M%S}.jsonl"
        _check_out(log, "--log")
        check_new_log(log)  # a log holds one session: never append to an earlier one
        study = StudyOptions(args.participant, args.condition, log)
        if args.condition == "off":
            model = None  # 'off' runs no model at all
    source = pipe_cfg.source or None
    from sonolens.pipeline.multi import stream_path
    from sonolens.pipeline.outputs import refuse_inputs_as_outputs
    from sonolens.pipeline.run_cli import model_file_of

    outputs = {"--screenshot file": args.screenshot, "--report file": args.report,
               "--log file": study.log if study else None}
    csvs = ([(f" of stream {k}", stream_path(pipe_cfg.csv, k)) for k in range(1, len(sources) + 1)] if sources
            else [("", pipe_cfg.csv)])  # the grid: each stream's CSVs (f_1.csv, f_1_display.csv…)
    for name, csv in csvs:
        outputs |= {f"--csv file{name}": csv, f"--csv display file{name}": display_csv_path(csv)}
    inputs = {"model": model_file_of(model)}
    inputs |= {f"source {k}": s for k, s in enumerate(sources, 1)} if sources else {"source": source}
    refuse_inputs_as_outputs(outputs, inputs)
    if source is None and automation:
        raise ConfigError("no SOURCE given and the bundled sample (assets/sample_videos/busi_demo.mp4) was not found")
    if args.present and args.selfcheck:
        raise ConfigError("--present shows no latency stamp strip: leave out --selfcheck")
    selfcheck = False if args.present else (args.selfcheck if args.selfcheck is not None else bool(args.report))
    pipe_cfg.model = model
    return ViewerOptions(source=source, pipeline=pipe_cfg,
                         heatmap=args.heatmap, alpha=args.opacity, colormap=args.colormap, selfcheck=selfcheck,
                         present=args.present,
                         study=study,
                         exit_after_frames=args.exit_after_frames, exit_after_seconds=args.exit_after_seconds,
                         screenshot=args.screenshot, report=args.report, snapshot_dir=args.snapshot_dir,
                         record_dir=args.record_dir, automation=automation, sources=sources)


def _ensure_display(automation: bool) -> None:
    """Qt aborts the process when it cannot reach a display: say so in one line instead."""
    if os.environ.get("QT_QPA_PLATFORM") or sys.platform in ("win32", "darwin"):
        return
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    if automation:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # scripted runs work headless
        return
    raise ConfigError("no display found (DISPLAY/WAYLAND_DISPLAY unset); run under a desktop session, xvfb-run, "
                      "or set QT_QPA_PLATFORM=offscreen")


DARK_QSS = """
QMainWindow, QWidget#side { background: #161b22; }
QWidget { color: #d8dee9; }
QLabel#heading { color: #8b949e; font-weight: bold; letter-spacing: 1px; font-size: 9pt; }
QLabel#muted { color: #8b949e; font-size: 9pt; }
QLabel#hud { color: #b5e8b5; }
QFrame#sep { color: #30363d; background: #30363d; max-height: 1px; border: none; }
QStatusBar { background: #0d1014; color: #8b949e; }
QMenuBar { background: #0d1014; color: #d8dee9; }
QMenuBar::item:selected { background: #30363d; }
QMenu { background: #161b22; color: #d8dee9; border: 1px solid #30363d; }
QMenu::item:selected { background: #30363d; }
QComboBox, QCheckBox { color: #d8dee9; }
QComboBox { background: #21262d; border: 1px solid #30363d; padding: 2px 6px; border-radius: 4px; }
QSlider::groove:horizontal { height: 4px; background: #30363d; border-radius: 2px; }
QSlider::handle:horizontal { background: #58a6ff; width: 12px; margin: -5px 0; border-radius: 6px; }
QSlider::sub-page:horizontal { background: #1f6feb; border-radius: 2px; }
"""


_QT_NOISE = ("propagateSizeHints",)  # the offscreen platform warns about this on every window


def _qt_messages(mode, context, message: str) -> None:
    if not any(n in message for n in _QT_NOISE):
        print(message, file=sys.stderr)


def make_app(argv0: str = "sonolens"):
    from PyQt6.QtCore import qInstallMessageHandler
    from PyQt6.QtWidgets import QApplication

    qInstallMessageHandler(_qt_messages)

    from .widgets import dark_palette

    app = QApplication.instance() or QApplication([argv0])
    app.setApplicationName("sonolens")
    app.setStyle("Fusion")
    app.setPalette(dark_palette())  # dialogs (file, camera, errors) get the dark ground the style sheet assumes
    app.setStyleSheet(DARK_QSS)
    return app


def create_window(opts, size: str = "1280x800", screen: int | None = None, fullscreen: bool = False):
    """The window, sized and placed (``--screen``), shown, not yet started (``window.start()``): the viewer, or
    the grid for several sources (``opts.sources``)."""
    from PyQt6.QtWidgets import QApplication

    from .grid import GridWindow
    from .window import ViewerWindow

    win = GridWindow(opts) if opts.grid else ViewerWindow(opts)
    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size must be WxH, e.g. 1280x800, got {size!r}") from None
    screens = QApplication.screens()
    if screen is not None:
        if not 0 <= screen < len(screens):
            raise ConfigError(f"--screen {screen}: there {'is' if len(screens) == 1 else 'are'} only "
                              f"{len(screens)} screen(s) (0..{len(screens) - 1})")
        target = screens[screen]
    else:
        target = QApplication.primaryScreen()
    if target is not None:
        avail = target.availableGeometry()
        w, h = min(w, avail.width()), min(h, avail.height())
        win.resize(w, h)
        win.move(avail.x() + (avail.width() - w) // 2, avail.y() + (avail.height() - h) // 2)
    else:
        win.resize(w, h)
    if fullscreen:
        win.showFullScreen()
    else:
        win.show()
    if target is not None and win.windowHandle() is not None:
        win.windowHandle().setScreen(target)
    return win


def cli_main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    opts = options_from_args(args)
    _ensure_display(opts.automation)
    import cv2
    from PyQt6.QtCore import QTimer

    # OpenCV's own thread pool (resize, colour maps) on top of the pipeline's threads oversubscribes a small CPU
    # and stretches the latency tail: the viewer runs each OpenCV call on the thread that makes it.
    cv2.setNumThreads(1)
    # A thread that finished its C work (inference, decoding, a paint) waits for the GIL up to the switch interval
    # (5 ms by default) while another runs Python code; 1 ms trims that wait from the display latency's tail.
    sys.setswitchinterval(0.001)
    app = make_app()
    from .signals import QtShutdownSignals

    windows: list = []
    # Ctrl-C / SIGTERM: the window's normal way out (study log end, recordings, report), exit code 128 + N. They
    # are delivered from the event loop, which runs only once the window exists.
    with QtShutdownSignals(lambda signum: windows[0].automation.interrupt(signum) if windows else None) as signals:
        win = create_window(opts, args.size, args.screen, args.fullscreen)
        windows.append(win)

        def go() -> None:
            if not win.automation.finishing:  # a signal may have ended the session before it started
                win.start()

        QTimer.singleShot(0, go)  # start the pipeline once the window is on screen
        rc = app.exec()
    return int(rc or win.exit_code or signals.exit_code or 0)


__all__ = ["cli_main", "parser", "options_from_args", "create_window", "make_app", "MAX_STREAMS"]
