"""``er-grid data fetch NAME [--root DIR]`` and ``er-grid data check [NAME] [--root DIR]``.

DIR is the data root, holding one folder per dataset (``DIR/mnist``, ``DIR/cifar10``, …);
by default ``$ER_GRID_DATA_ROOT``, else ``~/er-grid-data`` — where er_core's loaders, the jobs
and the cluster's trials look. ``fetch`` downloads and unpacks into ``DIR/NAME``
(er_core/download.py: mirrors, checksums, resume); ``check`` verifies what is there and
exits 1 when a dataset is missing or damaged. A failed download (every mirror tried) or an
OS error prints one line and exits 2; a failed download adds one line naming the offline route
(the standard files to put in ``DIR/NAME`` by hand). A partial download stays as
``<file>.part`` and the next ``fetch`` resumes it; a folder the failed fetch created and left
empty is removed. ``digits`` is bundled with scikit-learn and needs neither.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR = 0, 1, 2


def _data_root(root: str | None) -> Path:
    from er_core.data import data_root

    return Path(root).expanduser() if root else data_root()


def cmd_fetch(args) -> int:
    from er_core.download import DownloadError, fetch, offline_files, source

    folder = _data_root(args.root) / args.name
    print(f"{args.name}: fetching into {folder}", flush=True)
    try:
        fetch(args.name, folder, progress=True)
    except OSError as err:  # DownloadError, permission denied, disk full, …
        print(f"er-grid: error: {err}", file=sys.stderr)
        if isinstance(err, DownloadError):
            again = f"er-grid data fetch {args.name}" + (f" --root {args.root}" if args.root else "")
            print(f"without a network: put {args.name}'s standard files ({offline_files(args.name)}) in {folder} "
                  f"(under the data root {folder.parent}; formats in er_core/data.py), then run {again} again: it "
                  "downloads nothing that is there and intact" + (", unpacks the archive" if source(args.name).unpack
                                                                   else "") + " and checks the files",
                  file=sys.stderr)
        return EXIT_ERROR
    print(f"{args.name}: ok ({folder})")
    return EXIT_OK


def cmd_check(args) -> int:
    from er_core.download import SOURCES, check

    root = _data_root(args.root)
    names = [args.name] if args.name else list(SOURCES)
    status = EXIT_OK
    for name in names:
        if not (root / name).exists():
            status = EXIT_PROBLEMS
            print(f"{name}: not fetched ({root / name} does not exist) — er-grid data fetch {name}"
                  + (f" --root {args.root}" if args.root else ""))
            continue
        problems = check(name, root / name)
        if not problems:
            print(f"{name}: ok ({root / name})")
            continue
        status = EXIT_PROBLEMS
        print(f"{name}: {len(problems)} problem(s) in {root / name} — fix with: er-grid data fetch {name}"
              + (f" --root {args.root}" if args.root else ""))
        for line in problems[:10]:
            print(f"  {line}")
        if len(problems) > 10:
            print(f"  … and {len(problems) - 10} more")
    return status


def add_data_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``er-grid data`` and its ``fetch``/``check`` subcommands on ``sub``."""
    from er_core.download import SOURCES

    names = sorted(SOURCES)
    p = sub.add_parser("data", help="download (fetch) or verify (check) the datasets")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    root_help = "data root, one folder per dataset (default: $ER_GRID_DATA_ROOT, else ~/er-grid-data)"

    fetch = data_sub.add_parser("fetch", help="download a dataset in its standard on-disk format")
    fetch.add_argument("name", metavar="NAME", choices=names, help=f"one of: {', '.join(names)}")
    fetch.add_argument("--root", metavar="DIR", help=root_help)
    fetch.set_defaults(func=cmd_fetch)

    check = data_sub.add_parser("check", help="verify datasets on disk (all when NAME is left out)")
    check.add_argument("name", metavar="NAME", nargs="?", choices=names, help=f"one of: {', '.join(names)}")
    check.add_argument("--root", metavar="DIR", help=root_help)
    check.set_defaults(func=cmd_check)
