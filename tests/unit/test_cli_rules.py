"""The command line's shared rules, as docs/cli.md states them."""

from __future__ import annotations

import re
from pathlib import Path

from sealkit.cli import main

DOC = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()


def test_the_exit_code_table_is_the_code() -> None:
    section = DOC.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| *(\d+) *\|", section, re.M)}
    constants = {name: value for name, value in vars(main).items() if name.startswith("EXIT_")}
    assert documented == set(constants.values()) == {0, 1, 2, 3, 4, 130}
    assert constants["EXIT_IO"] == 4 and constants["EXIT_FAILED"] == 1
    # main's docstring says the same, in words
    for code in documented - {130}:
        assert f"{code} " in (main.__doc__ or ""), code


def test_every_schema_in_the_json_table_ships() -> None:
    shipped = Path(main.__file__).resolve().parents[1] / "data"
    named = re.findall(r"`sealkit/data/([a-z-]+\.schema\.json)`", DOC)
    assert named and all((shipped / name).is_file() for name in named)
    assert {p.name for p in shipped.glob("*.schema.json")} == set(named)


def test_run_takes_the_shared_options_before_the_program() -> None:
    from sealkit.cli.commands.run import split_args

    assert split_args(["--width", "100", "--report=json", "-c", "print(1)", "--width", "3"]) == (
        ["--width", "100", "--report=json"],
        ["-c", "print(1)", "--width", "3"],
    )
    assert split_args(["--wid", "100", "--if-supported", "app.py", "--report"]) == (
        ["--wid", "100", "--if-supported"],
        ["app.py", "--report"],
    )
    # --report takes its value only as --report=json: the next word is the program
    assert split_args(["--report", "json", "x"]) == (["--report"], ["json", "x"])
