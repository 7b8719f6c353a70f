"""The AI runtime on the host: `spirit ai` with its paths under a test
directory (`--root`). A model pack is signed, pulled (a tampered one and one
signed with another key are refused, leaving nothing), and `spirit ai serve`
drives a stand-in llama-server (a Python script that speaks the same HTTP on
the same Unix socket, so that these tests need no build of llama.cpp): the
model loads on the first request, answers pass through (streamed ones as
they come), an idle model is unloaded after its keep-alive, a crash while
loading is said to the waiting request. tests/host/test_llama.py drives the
real llama-server."""

import http.client
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit"))

FAKE_LLAMA = r'''#!/usr/bin/env python3
# A stand-in for llama-server: the flags spirit ai passes, /health and a
# chat completion (whole, or streamed as server-sent events) on --host's socket.
import json, os, socket, sys, time
args = sys.argv[1:]
model = args[args.index("-m") + 1]
path = args[args.index("--host") + 1]
alias = args[args.index("--alias") + 1]
with open(os.path.join(os.path.dirname(path), "argv"), "w") as f:
    f.write(" ".join(args))
if open(model, "rb").read(9).endswith(b"CRASH"):
    print("llama: cannot load the model", flush=True)
    sys.exit(1)
started = time.monotonic()
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(8)
while True:
    conn, _ = server.accept()
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    length = next((int(l.split(":")[1]) for l in lines if l.lower().startswith("content-length")), 0)
    while len(body) < length:
        body += conn.recv(65536)
    target = lines[0].split(" ")[1]
    if target == "/health":
        loading = time.monotonic() - started < 0.5
        payload = b'{"error":{"code":503,"message":"Loading model"}}' if loading else b'{"status":"ok"}'
        conn.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (503 if loading else 200, len(payload)) + payload)
    elif json.loads(body or b"{}").get("stream"):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for word in ["Hel", "lo"]:
            event = b'data: {"choices":[{"delta":{"content":"%s"}}]}\n\n' % word.encode()
            conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
            time.sleep(0.3)
        conn.sendall(b"6\r\ndata: \r\n0\r\n\r\n")
    else:
        request = json.loads(body)
        answer = {"model": alias, "choices": [{"message": {"role": "assistant", "content": "echo: " + request["messages"][-1]["content"]}}],
                  "timings": {"prompt_n": 3, "predicted_n": 2}}
        payload = json.dumps(answer).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload)
    conn.close()
'''


def spirit(*args, root=None, check=True):
    command = [str(SPIRIT), "ai"] + (["--root", str(root)] if root else []) + list(args)
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, f"{command}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, timeout=30):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    connection.request(method, path, body=json.dumps(body) if body is not None else None,
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, response.read()


@pytest.fixture
def machine(tmp_path):
    """A root with a signing key, the stand-in llama-server, an AVX2 CPU, and a
    shelf with two signed packs (one that crashes the stand-in)."""
    root = tmp_path / "root"
    key = tmp_path / "signing.key"
    subprocess.run([str(SPIRIT), "image", "keygen", str(key)], check=True, capture_output=True)
    (root / "etc/spirit").mkdir(parents=True)
    (root / "etc/spirit/signing.pub").write_bytes(Path(str(key) + ".pub").read_bytes())
    binaries = root / "usr/libexec/spirit"
    binaries.mkdir(parents=True)
    (binaries / "llama-server").write_text(FAKE_LLAMA)
    (binaries / "llama-server").chmod(0o755)
    (root / "proc").mkdir()
    (root / "proc/cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu sse4_2 ssse3 popcnt avx avx2 fma f16c bmi2\n")
    shelf = tmp_path / "medium"
    for name, content in [("tiny", b"GGUF" + bytes(range(256)) * 64), ("crashy", b"GGUFCRASH")]:
        gguf = tmp_path / f"{name}.gguf"
        gguf.write_bytes(content)
        subprocess.run([str(SPIRIT), "ai", "pack", "--gguf", str(gguf), "--name", name, "--key", str(key), "--license", "MIT",
                        "--source", "a test", "--out", str(shelf / "models")], check=True, capture_output=True)
    return root, shelf, key, tmp_path


def test_packs_are_signed_checked_and_pulled(machine):
    root, shelf, key, tmp = machine
    assert spirit("models", root=root).stdout.startswith("no models")
    # A GGUF whose bytes changed after signing: refused, nothing kept.
    bad = tmp / "bad"
    subprocess.run(["cp", "-r", str(shelf), str(bad)], check=True)
    with open(bad / "models/tiny.gguf", "r+b") as f:
        f.seek(100)
        f.write(b"X")
    result = spirit("pull", "tiny", "--from", str(bad), root=root, check=False)
    assert result.returncode == 111 and "is refused" in result.stderr and "SHA-256" in result.stderr and "nothing was kept" in result.stderr, result.stderr
    assert not list((root / "run/spirit/models").iterdir())
    # Signed with another key: refused before a byte is copied.
    other = tmp / "other.key"
    subprocess.run([str(SPIRIT), "image", "keygen", str(other)], check=True, capture_output=True)
    subprocess.run([str(SPIRIT), "ai", "pack", "--gguf", str(tmp / "tiny.gguf"), "--name", "tiny", "--key", str(other), "--license", "MIT",
                    "--source", "elsewhere", "--out", str(tmp / "stranger/models")], check=True, capture_output=True)
    result = spirit("pull", "tiny", "--from", str(tmp / "stranger"), root=root, check=False)
    assert result.returncode == 111 and "signature" in result.stderr and "nothing was kept" in result.stderr, result.stderr
    # Not a GGUF; a missing pack; a bad name.
    (tmp / "text.gguf").write_text("hello")
    result = subprocess.run([str(SPIRIT), "ai", "pack", "--gguf", str(tmp / "text.gguf"), "--name", "t", "--key", str(key), "--license", "MIT",
                             "--source", "x", "--out", str(tmp / "x")], capture_output=True, text=True)
    assert result.returncode == 111 and "is not a GGUF file" in result.stderr, result.stderr
    result = spirit("pull", "nothere", "--from", str(shelf), root=root, check=False)
    assert result.returncode == 111 and "there is no model nothere" in result.stderr, result.stderr
    result = spirit("pull", "Bad Name", "--from", str(shelf), root=root, check=False)
    assert result.returncode == 111 and "is not a model name" in result.stderr, result.stderr
    # The good ones.
    spirit("pull", "--from", str(shelf / "models"), root=root)
    listing = json.loads(spirit("models", "--json", root=root).stdout)
    assert [m["name"] for m in listing] == ["crashy", "tiny"] and listing[1]["size"] == 4 + 256 * 64 and listing[1]["license"] == "MIT"
    result = spirit("pull", "tiny", "--from", str(shelf), root=root, check=False)
    assert result.returncode == 111 and "already here" in result.stderr
    spirit("remove", "crashy", root=root)
    assert [m["name"] for m in json.loads(spirit("models", "--json", root=root).stdout)] == ["tiny"]


def test_serve_loads_on_demand_passes_through_and_unloads_when_idle(machine):
    root, shelf, _, _ = machine
    spirit("pull", "--from", str(shelf), root=root)
    port = free_port()
    daemon = subprocess.Popen([str(SPIRIT), "ai", "--root", str(root), "serve", "--listen", f"127.0.0.1:{port}", "--keep-alive", "3",
                               "--load-timeout", "10", "--threads", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                status, body = request(port, "GET", "/health")
                break
            except OSError:
                assert time.monotonic() < deadline, "the API did not listen"
                time.sleep(0.1)
        assert spirit("health", root=root).returncode == 0, "the readiness probe: the daemon answers"
        health = json.loads(body)
        assert status == 200 and health["state"] == "unloaded" and health["models"] == ["crashy", "tiny"] and health["variant"] == "x86-64-v3"
        assert json.loads(request(port, "GET", "/v1/models")[1])["data"][1]["id"] == "tiny"
        assert json.loads(request(port, "GET", "/api/tags")[1])["models"][1]["size"] == 4 + 256 * 64

        # The first request loads the model (the stand-in answers 503 for 0.5 s).
        started = time.monotonic()
        status, body = request(port, "POST", "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]})
        assert status == 200, body
        answer = json.loads(body)
        assert answer["choices"][0]["message"]["content"] == "echo: hi" and answer["model"] == "tiny"
        print(f"\nfirst request, with the load: {time.monotonic() - started:.2f} s")
        argv = (root / "run/spirit/ai/argv").read_text()
        assert f"-m {root}/run/spirit/models/tiny.gguf --host {root}/run/spirit/ai/llama.sock --alias tiny -c 2048 -np 1 -t 2 --cache-ram 0 --no-webui" in argv
        status = json.loads(spirit("status", root=root).stdout)
        assert status["state"] == "ready" and status["model"] == "tiny" and status["unloads_in_s"] <= 3
        assert json.loads(request(port, "GET", "/api/ps")[1])["models"][0]["name"] == "tiny"

        # `spirit ai run`: the answer, printed.
        result = subprocess.run([str(SPIRIT), "ai", "run", "say hi"], capture_output=True, text=True, timeout=60,
                                env=dict(os.environ, SPIRIT_AI_LISTEN=f"127.0.0.1:{port}"))
        assert result.returncode == 0 and result.stdout == "echo: say hi\n", result

        # A streamed answer comes event by event, not at the end.
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("POST", "/v1/chat/completions", body=json.dumps({"stream": True, "messages": []}))
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
        first = response.fp.readline()
        assert first.startswith(b'data: {"choices":[{"delta":{"content":"Hel"}}]}'), first
        assert b"lo" in response.read()

        # What the API does not take.
        status, body = request(port, "POST", "/v1/chat/completions", {"model": "llama-70b", "messages": []})
        assert status == 404 and "there is no model llama-70b here (models: crashy, tiny)" in json.loads(body)["error"]["message"]
        assert request(port, "GET", "/v1/chat/completions")[0] == 405
        assert request(port, "GET", "/etc/passwd")[0] == 404
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(b"POST /v1/completions HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n")
            assert raw.recv(100).startswith(b"HTTP/1.1 413")

        # Idle past its keep-alive: unloaded, the process gone.
        deadline = time.monotonic() + 15
        while json.loads(spirit("status", root=root).stdout)["state"] != "unloaded":
            assert time.monotonic() < deadline, spirit("status", root=root).stdout
            time.sleep(0.5)

        # A model that crashes while loading: the request is told why.
        status, body = request(port, "POST", "/v1/completions", {"model": "crashy", "prompt": "x"})
        assert status == 503 and "llama-server exited with status 1 while loading crashy" in json.loads(body)["error"]["message"], body
        # Load and unload by hand.
        assert "tiny loaded" in spirit("load", "tiny", root=root).stderr
        assert json.loads(spirit("status", root=root).stdout)["state"] == "ready"
        assert "tiny unloaded" in spirit("unload", root=root).stderr
        assert json.loads(spirit("status", root=root).stdout)["state"] in ("stopping", "unloaded")
        result = spirit("load", "nothere", root=root, check=False)
        assert result.returncode == 111 and "there is no model nothere" in result.stderr
    finally:
        daemon.terminate()
        out, _ = daemon.communicate(timeout=20)
        print(out)
    assert daemon.returncode == 0, out
    assert "ai: tiny loaded in" in out and "ai: unloading tiny: idle for 3 s" in out, out


def test_no_llama_server_is_not_applicable(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text("flags\t\t: fpu sse sse2\n")
    result = spirit("serve", "--listen", f"127.0.0.1:{free_port()}", root=tmp_path, check=False)
    assert result.returncode == 64 and "no llama-server is installed" in result.stdout + result.stderr
    (tmp_path / "usr/libexec/spirit").mkdir(parents=True)
    (tmp_path / "usr/libexec/spirit/llama-server").write_text("#!/bin/sh\n")
    result = spirit("serve", "--listen", f"127.0.0.1:{free_port()}", root=tmp_path, check=False)
    assert result.returncode == 64 and "lacks avx, avx2, fma, f16c, bmi2" in result.stdout + result.stderr
    result = spirit("serve", "--keep-alive", "soon", root=tmp_path, check=False)
    assert result.returncode == 100 and "--keep-alive takes seconds or never" in result.stderr
