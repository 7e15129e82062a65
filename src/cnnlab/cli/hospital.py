"""In a hospital: `cnnlab screen` (a PACS over DICOMweb) and `cnnlab receive` (images pushed by
C-STORE), both answering through `cnnlab predict`'s path and storing an SR and a Secondary
Capture back into each study; every decision on record (`cnnlab decisions`)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from datetime import date

from cnnlab.cli.common import add_require_signed
from cnnlab.errors import CnnlabError


def register(sub: argparse._SubParsersAction) -> None:
    _add_screen(sub)
    _add_receive(sub)


def _modalities(text: str) -> list[str]:
    return [m.strip().upper() for m in text.split(",") if m.strip()]


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _add_screen(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "screen",
        help="screen the studies of a PACS over DICOMweb and store the results back",
        description="QIDO-RS finds the studies (by date and modality), those not yet screened "
        "are claimed (never screened twice, even after a restart), WADO-RS fetches their "
        "images, the model answers as `cnnlab predict` does, and STOW-RS stores a DICOM SR "
        "per image and a Secondary Capture with the Grad-CAM (NOT FOR DIAGNOSIS) into the "
        "study. A study that fails is retried on the next pass; the others go on.",
    )
    p.add_argument("--dicomweb", required=True, metavar="URL",
                   help="the PACS's DICOMweb root, e.g. http://localhost:8042/dicom-web")  # fmt: skip
    p.add_argument("--bundle", default="pneumonia", help="bundle folder or shipped model name")
    when = p.add_mutually_exclusive_group()
    when.add_argument(
        "--since", type=_day, metavar="YYYY-MM-DD", help="studies dated from this day"
    )
    when.add_argument("--days", type=int, metavar="N",
                      help="studies dated from N days ago (default 1: today and yesterday)")  # fmt: skip
    p.add_argument("--modality", type=_modalities, metavar="CR,DX",
                   help="modalities to fetch (default: those the bundle accepts, else any)")  # fmt: skip
    p.add_argument("--store-back", action=argparse.BooleanOptionalAction, default=True,
                   help="store the SR and Secondary Capture into the study (default yes)")  # fmt: skip
    p.add_argument("--watch", action="store_true", help="keep polling until stopped (Ctrl-C)")
    p.add_argument("--every", type=float, default=60.0, metavar="S",
                   help="with --watch: seconds between passes (default 60)")  # fmt: skip
    p.add_argument("--records", metavar="URL",
                   help="the decision store (default $CNNLAB_RECORDS, else decisions.db in "
                   "cnnlab's data folder); claims live there too")  # fmt: skip
    add_require_signed(p)
    p.set_defaults(func=cmd_screen)


def _open(args: argparse.Namespace):
    """The decision store, and the bundle's loader: loaded (and checked) once, on first use."""
    import functools

    from cnnlab.bundle.loading import load_bundle
    from cnnlab.records.store import DecisionStore

    store = DecisionStore(args.records)
    return functools.cache(
        lambda: load_bundle(args.bundle, require_signed=args.require_signed)
    ), store


def _accepted_modalities(ref: str) -> list[str]:
    """The modalities the bundle accepts, read from its bundle.json without loading it (the
    load itself checks everything, seal included, before any image is read)."""
    from cnnlab.bundle.accepts import Accepts
    from cnnlab.bundle.catalog import META, resolve_bundle
    from cnnlab.bundle.check import read_meta

    path = resolve_bundle(ref)
    accepts = Accepts.from_record(read_meta(path, META).get("accepts"), path / META)
    return list(accepts.modality) if accepts is not None else []


def cmd_screen(args: argparse.Namespace) -> int:
    from cnnlab.pacs.screening import date_range, screen_pass, watch

    if args.days is not None and args.days < 0:
        raise CnnlabError("--days must be 0 or more")
    if args.every <= 0:
        raise CnnlabError("--every must be a positive number of seconds")
    load, store = _open(args)
    modalities = args.modality or _accepted_modalities(args.bundle)
    dates = date_range(args.since, 1 if args.days is None and args.since is None else args.days)
    failed: list[str] = []

    def report(outcome) -> None:
        print(outcome.line, flush=True)
        if outcome.error:
            failed.append(outcome.study_uid)

    def run_pass():
        return screen_pass(args.dicomweb, load, store, dates, modalities, args.store_back,
                           report=report)  # fmt: skip

    if not args.watch:
        outcomes = run_pass()
        done = sum(o.error is None for o in outcomes)
        print(f"{done} stud{'y' if done == 1 else 'ies'} screened, {len(failed)} failed (retried "
              f"on the next run); decisions on record in {store.where}", file=sys.stderr)  # fmt: skip
        return 2 if failed else 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"watching {args.dicomweb} every {args.every:g} s (Ctrl-C stops)", file=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        watch(args.every, stop, run_pass,
              lambda e: print(f"cnnlab: error: {e} (trying again in {args.every:g} s)",
                              file=sys.stderr, flush=True))  # fmt: skip
    return 0


def _add_receive(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "receive",
        help="a DICOM receiver (C-STORE SCP): screen each image pushed, send the results on",
        description="Listens for C-STORE from a modality or a PACS; each image is screened as "
        "`cnnlab predict` would, its decision recorded, and the SR and Secondary Capture "
        "sent to the DICOMweb destination (--to) into the image's study.",
    )
    p.add_argument("--port", type=int, default=11112, help="DICOM port (default 11112)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--ae-title", default="CNNLAB", help="this receiver's AE title (default CNNLAB)")
    p.add_argument("--to", required=True, metavar="URL",
                   help="DICOMweb root the results are stored into (STOW-RS)")  # fmt: skip
    p.add_argument("--bundle", default="pneumonia", help="bundle folder or shipped model name")
    p.add_argument("--records", metavar="URL", help="the decision store (as for `screen`)")
    add_require_signed(p)
    p.set_defaults(func=cmd_receive)


def cmd_receive(args: argparse.Namespace) -> int:
    from cnnlab.pacs.receiver import Receiver

    if not 0 < args.port < 65536:
        raise CnnlabError(f"--port must be 1-65535, got {args.port}")
    load, store = _open(args)
    receiver = Receiver(load(), args.to, store, args.ae_title)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    receiver.start(args.host, args.port)
    print(f"receiving as {args.ae_title} on {args.host}:{args.port}; results to {args.to} "
          "(Ctrl-C stops)", file=sys.stderr, flush=True)  # fmt: skip
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    return 0
