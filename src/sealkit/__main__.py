"""``python -m sealkit``: the same command line as ``sealkit``."""

from sealkit.cli.main import entry

if __name__ == "__main__":
    entry()
