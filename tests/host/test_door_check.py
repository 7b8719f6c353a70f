"""The door check (scripts/door-check.py) holds on the tree and catches a raw call."""
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHECK = ROOT / "scripts" / "door-check.py"


def run(sources):
    return subprocess.run([sys.executable, str(CHECK), str(sources)], capture_output=True, text=True)


def test_the_tree_goes_through_the_door():
    result = run(ROOT / "Sources")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_raw_unlink_in_the_supervisor_fails(tmp_path):
    sources = tmp_path / "Sources"
    shutil.copytree(ROOT / "Sources", sources)
    target = sources / "Supervisor" / "ServiceLog.swift"
    target.write_text(target.read_text() + '\nfunc forget(_ path: String) { unlink(path) }\n')
    result = run(sources)
    assert result.returncode == 1
    assert "Supervisor/ServiceLog.swift" in result.stdout and "unlink(" in result.stdout


def test_an_import_of_the_c_layer_fails(tmp_path):
    sources = tmp_path / "Sources"
    shutil.copytree(ROOT / "Sources", sources)
    target = sources / "Nodus" / "NBDClient.swift"
    target.write_text("import CSpirit\n" + target.read_text())
    result = run(sources)
    assert result.returncode == 1 and "imports CSpirit" in result.stdout


def test_comments_strings_methods_and_own_functions_are_not_calls(tmp_path):
    sources = tmp_path / "Sources"
    (sources / "Example").mkdir(parents=True)
    (sources / "Example" / "Example.swift").write_text(
        '// unlink(path) in a comment\n'
        'let message = "unable to unlink(x)"\n'
        'func mount(_ a: [String]) -> Int32 { 0 }\n'
        'let code = mount(["x"])\n'
        'try socket.read(into: buffer)\n'
        'enum Step { case wait(until: Int) }\n')
    result = run(sources)
    assert result.returncode == 0, result.stdout
