"""llama.cpp's llama-server as `spirit ai` will run it (make llama-server,
make model-gguf): the static binary with the SmolLM2-135M GGUF on a unix
socket, one slot, no prompt cache in RAM, no web UI. /health answers 503
while the model loads, then 200; a chat completion at temperature 0 gives
text and its timings; a JSON-schema response format gives JSON valid against
the schema for every prompt. Start time, time to first token and tokens/s
are printed, not asserted (they belong to make bench)."""

import http.client
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER = Path(os.environ.get("SPIRIT_LLAMA_SERVER", ROOT / "out/llama-server"))
MODEL = Path(os.environ.get("SPIRIT_MODEL", ROOT / "out/models/SmolLM2-135M-Instruct.Q4_1.gguf"))

TOOLS = ["status", "start", "stop", "restart"]
SERVICES = ["nodus", "modules", "nexus"]
SCHEMA = {
    "type": "object",
    "properties": {"tool": {"type": "string", "enum": TOOLS}, "service": {"type": "string", "enum": SERVICES}},
    "required": ["tool", "service"],
    "additionalProperties": False,
}


class UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a unix socket, with only the standard library."""

    def __init__(self, path: Path, timeout: float = 120):
        super().__init__("localhost", timeout=timeout)
        self.path = str(path)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def request(path: Path, method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    connection = UnixConnection(path)
    try:
        connection.request(method, url, body=json.dumps(body) if body is not None else None,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


class Server:
    def __init__(self, directory: Path):
        for path, what in [(SERVER, "make llama-server"), (MODEL, "make model-gguf")]:
            assert path.is_file(), f"{path} is missing: {what} makes it (make host-test does both)"
        self.socket = directory / "llama.sock"
        self.log = directory / "llama-server.log"
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [str(SERVER), "-m", str(MODEL), "--host", str(self.socket), "-c", "2048", "-np", "1", "-t", "2",
             "--cache-ram", "0", "--no-webui"],
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, env=dict(os.environ, HOME=str(directory)))
        self.health = self.wait_until_healthy()
        self.ready_seconds = time.monotonic() - self.started

    def wait_until_healthy(self) -> list[int]:
        """Polls /health from the start: the statuses it gave, in order, without repeats."""
        seen: list[int] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"llama-server exited with {self.process.returncode}:\n{self.log.read_text()}"
            try:
                status, _ = request(self.socket, "GET", "/health")
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.002)
                continue
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == 200:
                return seen
            time.sleep(0.002)
        raise AssertionError(f"/health did not answer 200 in 120 s (statuses {seen}):\n{self.log.read_text()}")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("llama"))
    yield server
    server.stop()


def chat(server: Server, prompt: str, **settings) -> dict:
    status, answer = request(server.socket, "POST", "/v1/chat/completions",
                             {"messages": [{"role": "user", "content": prompt}], "temperature": 0, **settings})
    assert status == 200, answer
    return answer


def test_health_is_503_while_loading_then_200_on_the_unix_socket(server):
    assert server.socket.is_socket()
    assert server.health == [503, 200], server.health
    print(f"llama-server: start to /health 200 in {server.ready_seconds:.2f} s")


def test_a_chat_completion_at_temperature_0_answers_with_timings(server):
    started = time.monotonic()
    answer = chat(server, "What is 2+2? Answer with one number.", max_tokens=8)
    seconds = time.monotonic() - started
    text = answer["choices"][0]["message"]["content"]
    assert text.strip(), answer
    timings = answer["timings"]
    assert timings["predicted_n"] >= 1 and timings["prompt_n"] >= 1, timings
    # The time to the first token: one token asked for, measured here.
    started = time.monotonic()
    chat(server, "Name a colour.", max_tokens=1)
    ttft = time.monotonic() - started
    print(f"llama-server: {text.strip()!r} in {seconds:.2f} s; TTFT {ttft * 1000:.0f} ms; "
          f"prompt {timings['prompt_per_second']:.0f} t/s, generation {timings['predicted_per_second']:.0f} t/s; "
          f"RSS {server.rss_kib() // 1024} MiB")


@pytest.mark.parametrize("prompt", [
    "Please restart the nodus service.",
    "Is nexus running?",
    "Stop the modules service now.",
    "Start nodus.",
    "What is the status of modules?",
])
def test_a_json_schema_response_format_gives_valid_json(server, prompt):
    answer = chat(server, prompt, max_tokens=64,
                  response_format={"type": "json_schema", "json_schema": {"name": "action", "schema": SCHEMA}})
    text = answer["choices"][0]["message"]["content"]
    assert answer["choices"][0]["finish_reason"] == "stop", answer  # not cut by max_tokens
    action = json.loads(text)
    assert isinstance(action, dict) and set(action) == {"tool", "service"}, text
    assert action["tool"] in TOOLS and action["service"] in SERVICES, text
    print(f"llama-server: {prompt!r} -> {json.dumps(action)}")
