"""``python -m hakv.sim [--seed S] [--nodes 1000,10000] [--owners 3,5] [--plot PATH]``:
run every scenario and print one Markdown table (docs/scale.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hakv.sim.model import SimParams
from hakv.sim.report import format_details, format_table, plot, run_all


def _ints(text: str) -> list[int]:
    try:
        values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hakv.sim",
        description="Deterministic simulation of hakv's per-group ensembles against full "
                    "replication, with hakv's own decision code (docs/scale.md).")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--nodes", type=_ints, default=[1000, 10000],
                        help="cluster sizes, comma-separated (default 1000,10000)")
    parser.add_argument("--owners", type=_ints, default=[3, 5],
                        help="owners per group M, comma-separated (default 3,5)")
    parser.add_argument("--boot-spread", type=float, default=SimParams.boot_spread,
                        help="nodes power on within this many seconds (default 5)")
    parser.add_argument("--msg-cpu", type=float, default=SimParams.msg_cpu,
                        help="CPU seconds one message costs a raft thread (default 2e-05)")
    parser.add_argument("--plot", metavar="PATH", help="also write a PNG plot to PATH")
    parser.add_argument("--details", action="store_true",
                        help="also print messages by kind, per configuration")
    args = parser.parse_args(argv)
    for m in args.owners:
        if m < 2:
            parser.error(f"--owners: a group needs at least 2 owners, got {m}")
    for n in args.nodes:
        if n < max(args.owners) or n < 3:
            parser.error(f"--nodes: {n} is too small for groups of {max(args.owners)}")
    params = SimParams(boot_spread=args.boot_spread, msg_cpu=args.msg_cpu)
    try:
        params.validate()
    except ValueError as exc:
        parser.error(str(exc))
    results = run_all(args.nodes, args.owners, args.seed, params)
    print(format_table(results))
    if args.details:
        print()
        print(format_details(results))
    if args.plot:
        plot(results, args.plot, msg_cpu=params.msg_cpu)
        print(f"\nplot written to {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
