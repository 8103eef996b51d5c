"""Reports from a run's own logs.

    python report.py outputs/<run>              # one run: status, figures, last sample
    python report.py multirun/<date>/<time>     # a sweep: summary.md, summary.csv, curves.png
    python report.py --compare <run A> <run B>  # before / after, side by side
"""

from shakegpt.common.errors import exit_quietly_on_ctrl_c

exit_quietly_on_ctrl_c()  # first: Ctrl-C while the imports below run (seconds) is one line

import argparse
from pathlib import Path

from shakegpt.bookkeeping.report import compare_report, run_report
from shakegpt.bookkeeping.runs import is_sweep, load_run
from shakegpt.bookkeeping.sweep_summary import write_sweep_summary
from shakegpt.common.errors import report_user_errors


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="a run or sweep directory (two with --compare)")
    parser.add_argument("--compare", action="store_true", help="compare two runs side by side")
    return parser


@report_user_errors
def main() -> None:
    parser = make_parser()
    args = parser.parse_args()
    if args.compare:
        if len(args.paths) != 2:
            parser.error("--compare takes two run directories")
        print(compare_report(load_run(args.paths[0]), load_run(args.paths[1])))
        return
    for path in args.paths:
        if path.is_dir() and is_sweep(path):
            write_sweep_summary(path)
            print((path / "summary.md").read_text())
        else:
            print(run_report(load_run(path)))


if __name__ == "__main__":
    exit_quietly_on_ctrl_c(imports_done=True)
    main()
