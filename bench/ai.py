"""The AI runtime's figures of `make bench`, native on the host (the model's
speed under TCG says nothing about a real machine): `spirit ai serve` with the
real llama-server (make llama-server) and the SmolLM2-135M pack, under a
supervisor with stand-in services, as tests/host/test_ai_llama.py runs it.

- cold start: `spirit ai load` to the model loaded (the daemon's own log line),
  against llama-server started by hand to /health 200 (the peer: no daemon);
- time to the first streamed token, through the daemon's API and straight to
  llama-server's socket (the peer), same prompt, prompt cache on;
- tokens/s for the prompt and the answer (llama-server's own timings);
- `spirit ask` end to end (process start to exit) for a request the parser
  reads and for one the model routes, against `spiritctl status` (one
  control-socket round trip, the floor of any command that asks the
  supervisor);
- the resident memory of the daemon and of llama-server;
- the Sentinel: from a record written to this machine's real /dev/kmsg
  (`SQUASHFS error: spirit-bench probe N`, the kernel's format) to the
  incident it fires (a fresh Sentinel each run, so each record is a first
  incident), and its resident memory."""

import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "host"))
from test_ai_llama import make_root  # noqa: E402
from test_sentinel import Tree  # noqa: E402

PROMPT = "Write one sentence about the sea."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=300)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path)


def first_token_ms(connection: http.client.HTTPConnection, max_tokens: int = 16) -> tuple[float, dict]:
    body = {"messages": [{"role": "user", "content": PROMPT}], "temperature": 0, "max_tokens": max_tokens, "stream": True,
            "stream_options": {"include_usage": True}, "timings_per_token": False}
    started = time.monotonic()
    connection.request("POST", "/v1/chat/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    first, timings = None, {}
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        delta = (event.get("choices") or [{}])[0].get("delta", {})
        if first is None and delta.get("content"):
            first = (time.monotonic() - started) * 1000
        timings = event.get("timings", timings)
    connection.close()
    return first or float("nan"), timings


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def measure(spirit: Path, llama: Path, gguf: Path, runs: int, work: Path) -> dict:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    root = make_root(spirit, llama, gguf, work)
    supervisor = subprocess.Popen([str(spirit), "supervise", "--root", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = free_port()
    log = open(work / "ai.log", "w")
    daemon = subprocess.Popen([str(spirit), "ai", "--root", str(root), "serve", "--listen", f"127.0.0.1:{port}", "--keep-alive", "600"],
                              stdout=log, stderr=subprocess.STDOUT)
    env = dict(os.environ, SPIRIT_AI_ROOT=str(root), SPIRIT_AI_LISTEN=f"127.0.0.1:{port}")
    result: dict = {"runs": runs, "model": "SmolLM2-135M-Instruct Q4_1", "threads": os.cpu_count()}
    try:
        deadline = time.monotonic() + 20
        while not (root / "run/spirit/ai.sock").exists() or not (root / "run/spirit/control.sock").exists():
            assert time.monotonic() < deadline, "the AI runtime or the supervisor did not start"
            time.sleep(0.05)
        # Cold starts: unloaded by hand; `load` then waits for /health 200.
        ours = []
        for _ in range(runs):
            subprocess.run([str(spirit), "ai", "--root", str(root), "unload"], env=env, capture_output=True)
            while json.loads(subprocess.run([str(spirit), "ai", "--root", str(root), "status"], env=env, capture_output=True,
                                            text=True).stdout)["state"] != "unloaded":
                time.sleep(0.05)
            started = time.monotonic()
            subprocess.run([str(spirit), "ai", "--root", str(root), "load", "smollm2-135m"], env=env, check=True, capture_output=True)
            ours.append((time.monotonic() - started) * 1000)
        peer = []
        for run in range(runs):
            sock = work / f"peer-{run}.sock"
            started = time.monotonic()
            process = subprocess.Popen([str(llama), "-m", str(root / "run/spirit/models/smollm2-135m.gguf"), "--host", str(sock), "-c", "2048",
                                        "-np", "1", "-t", str(os.cpu_count()), "--cache-ram", "0", "--no-webui", "--no-warmup"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while True:
                try:
                    c = UnixHTTP(str(sock))
                    c.request("GET", "/health")
                    if c.getresponse().status == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.01)
            peer.append((time.monotonic() - started) * 1000)
            if run < runs - 1:
                process.terminate()
                process.wait()
        result["cold_start_ms"] = {"spirit_ai_load": median(ours), "llama_server_alone": median(peer), "all": ours, "peer_all": peer}
        # Time to first token: keep the model loaded for these.
        subprocess.run([str(spirit), "ai", "--root", str(root), "load", "smollm2-135m"], env=env, check=True, capture_output=True)
        via, direct, timings = [], [], {}
        first_token_ms(http.client.HTTPConnection("127.0.0.1", port, timeout=300))  # the prompt into the cache
        for _ in range(max(runs, 5)):
            via.append(first_token_ms(http.client.HTTPConnection("127.0.0.1", port, timeout=300))[0])
            direct.append(first_token_ms(UnixHTTP(str(work / f"peer-{runs - 1}.sock")))[0])
        _, timings = first_token_ms(http.client.HTTPConnection("127.0.0.1", port, timeout=300), max_tokens=128)
        process.terminate()
        process.wait()
        result["first_token_ms"] = {"spirit_api": median(via), "llama_server_socket": median(direct), "all": via, "peer_all": direct}
        result["tokens_per_second"] = {"prompt": timings.get("prompt_per_second"), "answer": timings.get("predicted_per_second"),
                                       "answer_tokens": timings.get("predicted_n")}
        status = json.loads(subprocess.run([str(spirit), "ai", "--root", str(root), "status"], env=env, capture_output=True, text=True).stdout)
        result["rss_kib"] = {"spirit_ai": rss_kib(daemon.pid), "llama_server": rss_kib(status["pid"]) if "pid" in status else None}

        def timed(*args: str) -> tuple[float, dict]:
            started = time.monotonic()
            out = subprocess.run([str(spirit), *args], env=env, capture_output=True, text=True, check=True).stdout
            return (time.monotonic() - started) * 1000, (json.loads(out.splitlines()[0]) if out.startswith("{") else {})
        parser = [timed("ask", "--dry-run", "restart nodus") for _ in range(max(runs, 10))]
        model = [timed("ask", "--dry-run", "please reset the nodus") for _ in range(max(runs, 5))]
        floor = [timed("ctl", "--root", str(root), "status")[0] for _ in range(max(runs, 10))]
        result["ask_ms"] = {"parser_end_to_end": median([p[0] for p in parser]), "parser_routing": median([p[1]["routed_ms"] for p in parser]),
                            "model_end_to_end": median([m[0] for m in model]), "model_routing": median([m[1]["routed_ms"] for m in model]),
                            "spiritctl_status": median(floor), "target_parser_ms": 50}
    finally:
        daemon.terminate()
        supervisor.terminate()
        daemon.wait(timeout=30)
        supervisor.wait(timeout=30)
        log.close()
    result["sentinel"] = sentinel(spirit, runs, work)
    return result


def sentinel(spirit: Path, runs: int, work: Path) -> dict:
    """The kmsg path natively: `spirit sentinel --root DIR` whose dev/kmsg is
    this machine's /dev/kmsg (root may write records into it)."""
    latencies, rss = [], []
    for run in range(runs):
        root = work / f"sentinel-{run}"
        if root.exists():
            shutil.rmtree(root)
        tree = Tree(root, {"idle": 'command = ["/bin/sleep", "1000"]\n'}, 30)
        try:
            tree.sentinel.send_signal(15)
            tree.sentinel.wait(timeout=30)
            tree.processes.remove(tree.sentinel)
            (root / "dev/kmsg").unlink()
            os.symlink("/dev/kmsg", root / "dev/kmsg")
            tree.sentinel = tree.start("sentinel", root / "sentinel.out")
            tree.wait_for(lambda: "watching with" in (root / "sentinel.out").read_text(), "the Sentinel on /dev/kmsg")
            time.sleep(0.3)
            written = time.clock_gettime(time.CLOCK_BOOTTIME) * 1000
            with open("/dev/kmsg", "w") as kmsg:
                kmsg.write(f"<3>SQUASHFS error: spirit-bench probe {run} (not a real error)\n")
            incident = tree.wait_for(lambda: tree.find("squashfs-error"), "the squashfs-error incident", timeout=10)
            latencies.append(incident["firing_ms"] - written)
            rss.append(rss_kib(tree.sentinel.pid))
        finally:
            tree.stop()
    return {"kmsg_to_incident_ms": median(latencies), "all_ms": latencies, "rss_kib": median(rss), "target_ms": 1000}


def markdown(result: dict) -> str:
    cold, first, rate, ask, rss = (result["cold_start_ms"], result["first_token_ms"], result["tokens_per_second"], result["ask_ms"],
                                   result["rss_kib"])
    return f"""## AI runtime

Native on this machine ({result['threads']} threads), {result['model']}, medians of {result['runs']} or more runs
(`bench/ai.py`). Cold start, `spirit ai load` to the model loaded: **{cold['spirit_ai_load']:.0f} ms**, against
{cold['llama_server_alone']:.0f} ms for llama-server started by hand to `/health` 200. First streamed token of a chat
answer (prompt cached): **{first['spirit_api']:.0f} ms** through the daemon's API, {first['llama_server_socket']:.0f} ms straight
to llama-server's socket. Speed: {rate['prompt'] or 0:.0f} tokens/s for the prompt, {rate['answer'] or 0:.0f} tokens/s for the
answer ({rate['answer_tokens']} tokens). `spirit ask` end to end: **{ask['parser_end_to_end']:.0f} ms** for a request the
parser reads ({ask['parser_routing']:.2f} ms of it routing; target < 50 ms), {ask['model_end_to_end']:.0f} ms for one the model
routes ({ask['model_routing']:.0f} ms routing), against {ask['spiritctl_status']:.0f} ms for `spiritctl status`. Resident
memory: the daemon {rss['spirit_ai'] / 1024:.1f} MiB, llama-server {(rss['llama_server'] or 0) / 1024:.0f} MiB (the weights are
tmpfs pages mapped, counted once). The Sentinel, on this machine's own `/dev/kmsg`: a `SQUASHFS error` record to its
incident in **{result['sentinel']['kmsg_to_incident_ms']:.1f} ms** (target < 1 s); its resident memory
{result['sentinel']['rss_kib'] / 1024:.1f} MiB.
"""


if __name__ == "__main__":
    runs = int(os.environ.get("BENCH_RUNS", "3"))
    spirit = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit"))
    llama = Path(os.environ.get("SPIRIT_LLAMA_SERVER", ROOT / "out/llama-server"))
    gguf = Path(os.environ.get("SPIRIT_MODEL", ROOT / "out/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    figures = measure(spirit, llama, gguf, runs, ROOT / "out/bench/ai")
    print(json.dumps(figures, indent=2))
    print(markdown(figures))
