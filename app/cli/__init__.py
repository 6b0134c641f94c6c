"""The ``vitrine`` command line. Each sub-command lives in its own module and registers itself
through ``register(subparsers)``; this module only wires them together."""

import argparse
import importlib
import sys

from ..errors import VitrineError

# module name -> sub-command it provides; a module that does not exist yet is skipped so the
# CLI keeps working while sub-commands land one by one.
SUBCOMMAND_MODULES = ("predict", "models", "preprocess", "explain")


def build_parser():
    parser = argparse.ArgumentParser(prog="vitrine", description="Private medical image classification (CPython CLI).")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{module_name}":
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except VitrineError as exc:
        print(f"vitrine: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
