"""Reading ``proc_mem.force_override`` from the kernel command line and configuration."""

from __future__ import annotations

from sealkit._os.procmem import _from_cmdline, _from_config


def test_the_last_valid_value_on_the_command_line_wins() -> None:
    assert _from_cmdline("quiet proc_mem.force_override=never ro") == "never"
    assert _from_cmdline("proc_mem.force_override=never proc_mem.force_override=ptrace") == "ptrace"
    # An unknown value keeps the Kconfig choice (early_proc_mem_force_override()).
    assert _from_cmdline("proc_mem.force_override=never proc_mem.force_override=nope") == "never"
    assert _from_cmdline("proc_mem.force_override=bogus") is None
    assert _from_cmdline("quiet") is None
    # What follows "--" goes to init, not to the kernel.
    assert _from_cmdline("quiet -- proc_mem.force_override=never") is None


def test_the_kconfig_choice_names_the_setting() -> None:
    head = "CONFIG_SWAP=y\n"
    assert _from_config(head + "CONFIG_PROC_MEM_ALWAYS_FORCE=y\n") == "always"
    assert (
        _from_config(
            head + "# CONFIG_PROC_MEM_ALWAYS_FORCE is not set\nCONFIG_PROC_MEM_FORCE_PTRACE=y\n"
        )
        == "ptrace"
    )
    assert _from_config(head + "CONFIG_PROC_MEM_NO_FORCE=y\n") == "never"
    assert _from_config(head) is None  # a kernel before 6.12: no choice
