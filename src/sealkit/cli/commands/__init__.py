"""One module per ``sealkit`` subcommand.

Each module defines ``NAME`` (the subcommand), ``HELP`` (one line),
``ORDER`` (position in ``--help``), ``add_arguments(parser)`` and
``run(args) -> int`` (the exit code). :mod:`sealkit.cli.main` discovers them.
"""
