"""The multi-call binary's command line on the host: a command's usage
error prints that command's own usage, and every rescue tool the images
link (scripts/rescue-tools.sh, for stage 1 and stage 2) is one the binary
answers to."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit")).resolve()


def run(*arguments, executable=SPIRIT):
    return subprocess.run([str(executable), *map(str, arguments)], capture_output=True, text=True)


def test_modules_without_a_verb_prints_its_own_usage():
    result = run("modules")
    assert result.returncode == 100, result
    assert "modules needs plan, lookup, load, missing, deps, coldplug or index" in result.stderr, result.stderr
    assert "usage: spirit modules COMMAND" in result.stderr and "  modules coldplug" in result.stderr, result.stderr
    assert "usage: spirit <command>" not in result.stderr and "nodus serve" not in result.stderr, result.stderr
    assert run("modules", "frobnicate").stderr == result.stderr.replace(
        "modules needs plan, lookup, load, missing, deps, coldplug or index", "unknown modules command 'frobnicate'")
    assert run("modules", "help").stdout.startswith("usage: spirit modules COMMAND")
    # The program's usage still lists the modules commands, from the same text.
    assert "  modules plan [--root DIR]" in run("help").stdout


def test_every_linked_rescue_tool_runs(tmp_path):
    # The links as mkinitramfs.sh and mkrootfs.sh make them.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/spirit").symlink_to(SPIRIT)
    subprocess.run(["bash", "-c", f'source "{ROOT}/scripts/rescue-tools.sh" && link_rescue_tools "$1"', "-", tmp_path],
                   check=True)
    tools = sorted(path.name for path in (tmp_path / "bin").iterdir() if path.name != "spirit")
    assert tools == ["spirit-diag", "spirit-fetch", "spirit-mount", "spirit-net", "spirit-usb"], tools
    # Each answers as its tool (a usage error of its own: these arguments fit none).
    for tool in tools:
        result = run("x", "y", "z", executable=tmp_path / "bin" / tool)
        assert result.returncode == 100 and "unknown rescue tool" not in result.stderr, (tool, result.stderr)
    (tmp_path / "bin/spirit-nosuch").symlink_to("spirit")
    assert "unknown rescue tool 'nosuch'" in run(executable=tmp_path / "bin/spirit-nosuch").stderr


# The initramfs's /bin/spirit (make spirit: out/spirit-boot beside out/spirit).
BOOT = Path(os.environ.get("SPIRIT_BOOT_BINARY", SPIRIT.parent / "spirit-boot")).resolve()
# Sources/SpiritCommands/MultiCall.swift, StageTwoCommand: the full binary's alone.
STAGE_TWO = ["supervise", "ctl", "layer", "serve", "nexus", "vm", "sentinel", "metrics", "gpu", "ai", "ask", "persist",
             "upgrade"]
# What stage 1, PID 1 (spirit-init) and the rescue shell run, each with
# arguments that make it a usage error or a harmless answer.
STAGE_ONE = [("image", "frobnicate"), ("install", "frobnicate"), ("modules", "frobnicate"), ("nodus", "frobnicate"),
             ("net", "frobnicate"), ("time",), ("timeline", "a", "b"), ("journal", "--nosuch"), ("boot-plan",),
             ("init-journal",), ("shutdown-finish",), ("mount",), ("version",), ("help",)]


def test_the_boot_binary_has_stage_one_and_names_what_it_has_not():
    # Without the daemons (the HUD and its fonts, mujs and libvterm, the VM
    # manager, the supervisor, the Sentinel…): 2.5 MiB less on 2026-11-26;
    # what both keep is mostly the Swift runtime, Foundation Essentials
    # (swift-crypto's) and BoringSSL.
    assert BOOT.stat().st_size < SPIRIT.stat().st_size - (1 << 20), (BOOT.stat().st_size, SPIRIT.stat().st_size)
    for arguments in STAGE_ONE:
        boot, full = run(*arguments, executable=BOOT), run(*arguments)
        assert "unknown command '" not in boot.stderr and "is not in the initramfs:" not in boot.stderr, (arguments, boot)
        # The same code answers in both binaries.
        assert (boot.returncode, boot.stdout, boot.stderr) == (full.returncode, full.stdout, full.stderr), arguments
    for command in STAGE_TWO:
        result = run(command, "status", executable=BOOT)
        assert result.returncode == 100, (command, result)
        assert result.stderr.startswith(f"spirit: error: 'spirit {command}' is not in the initramfs: "), result.stderr
        assert "the system image's spirit has it" in result.stderr, result.stderr
        assert "is not in the initramfs:" not in run(command, "--nosuch-option").stderr, command
    unknown = run("frobnicate", executable=BOOT)
    assert unknown.returncode == 100 and "unknown command 'frobnicate'" in unknown.stderr, unknown
    # Both print the whole command surface, stage 2's under its own heading.
    assert run("help", executable=BOOT).stdout == run("help").stdout
    assert "The commands of a running system, in the system image's spirit only" in run("help").stdout


def test_the_rescue_tools_run_from_the_boot_binary(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/spirit").symlink_to(BOOT)
    subprocess.run(["bash", "-c", f'source "{ROOT}/scripts/rescue-tools.sh" && link_rescue_tools "$1"', "-", tmp_path],
                   check=True)
    for tool in sorted(path for path in (tmp_path / "bin").iterdir() if path.name != "spirit"):
        result = run("x", "y", "z", executable=tool)
        assert result.returncode == 100 and "unknown rescue tool" not in result.stderr, (tool, result.stderr)
