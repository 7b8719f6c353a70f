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
