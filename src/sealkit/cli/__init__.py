"""The ``sealkit`` command line. Uses only sealkit's public API."""
