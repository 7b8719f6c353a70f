"""The AI runtime on a real kernel: a CROM_SPIRIT disk with the system image,
the ai layer (llama-server, from `make layer NAME=ai`), the voice layer
(espeak-ng, PocketSphinx) and the SmolLM2 model pack (`make model-pack`).
The layers are stacked at boot and the pack copied into RAM before the disk
is let go; the ai service runs; `spirit ai run` answers (under TCG, so a few
tokens); `spirit ask` answers from live data, hears a spoken request
and asks before it restarts a service; a tampered pack is left out with the
reason while the boot goes on; with crom.ai=off the pack stays on the disk
and the service says why it does not run."""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, make_media
from harness import Disk

MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
def ai_media(tmp_path_factory, system_image) -> Path:
    layers = Path(os.environ.get("SPIRIT_LAYERS", ROOT / "out" / "layers"))
    models = Path(os.environ.get("SPIRIT_MODELS", ROOT / "out" / "packs" / "models"))
    files = {"rootfs.squashfs": system_image["image"], "manifest.json": system_image["manifest"],
             "layers/ai.squashfs": layers / "ai.squashfs", "layers/ai.json": layers / "ai.json",
             "layers/voice.squashfs": layers / "voice.squashfs", "layers/voice.json": layers / "voice.json",
             f"models/{MODEL}.gguf": models / f"{MODEL}.gguf", f"models/{MODEL}.json": models / f"{MODEL}.json"}
    missing = [str(path) for path in files.values() if not Path(path).exists()]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run the VM tests through 'make test' (it makes the ai layer and the model pack)")
    return make_media(tmp_path_factory.mktemp("ai-media"), files)


def service(vm, name: str) -> dict:
    out = vm.check(f"spiritctl --json status {name}")
    return json.loads(out[out.index('{"now_ms"'):])["services"][0]


def wait_state(vm, name: str, states: tuple[str, ...], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while (current := service(vm, name))["state"] not in states:
        assert time.monotonic() < deadline, f"{name}: {current}; log: {vm.log_path}"
        time.sleep(1)
    return current


def test_the_ai_layer_and_pack_from_the_medium_answer_and_ask_confirms(boot, ai_media):
    vm = boot("", disks=[Disk(str(ai_media), id="media")], memory_mib=2048, extra_args=["-cpu", "max"])
    vm.expect(r"spirit: ai: model smollm2-135m pulled from /dev/\S+ \(ext4, CROM_SPIRIT\)/models: 93 MiB", 240)
    vm.expect(r"^spirit: ready", 300)
    models = json.loads(vm.check("spirit ai models --json"))
    assert [m["name"] for m in models] == [MODEL] and models[0]["license"] == "Apache-2.0", models
    # The pack is in RAM; the disk it came from is not mounted any more.
    assert vm.check("grep -c '^/dev/vd' /proc/mounts || true").splitlines()[-1] == "0"
    assert wait_state(vm, "ai", ("running",))["state"] == "running"
    status = json.loads(vm.check("spirit ai status"))
    assert status["state"] == "unloaded" and status["models"] == [MODEL] and status["variant"] in ("x86-64-v3", "x86-64-v2"), status

    # One short answer: the model loads on demand (TCG: slow, so 4 tokens).
    started = time.monotonic()
    out = vm.check("spirit ai run 'What is 2+2? Answer with one number.' --max-tokens 4 2>&1", timeout=600)
    print(f"\nfirst answer under TCG, with the load: {time.monotonic() - started:.1f} s: {out!r}")
    assert re.search(r"ai: prompt \d+ tokens .*answer [1-4] tokens", out), out
    status = json.loads(vm.check("spirit ai status"))
    assert status["state"] == "ready" and status["model"] == MODEL, status

    # spirit ask: live data without the model, and a confirmation before a restart.
    out = vm.check("spirit ask 'what is using the most memory?'")
    assert re.search(r"^The process using the most memory is \S+ \(pid \d+\): [\d.]+ MiB resident\.$", out, re.M), out
    assert "llama-server" in out, out
    before = service(vm, "nodus")
    code, out = vm.run("echo n | spirit ask 'restart nodus'")
    assert code == 1 and "restart nodus? [y/N]" in out and "Nothing was done." in out, out
    assert service(vm, "nodus")["pid"] == before["pid"]
    out = vm.check("echo y | spirit ask 'restart nodus'")
    assert "restart nodus: done" in out, out
    after = wait_state(vm, "nodus", ("running",))
    assert after["pid"] != before["pid"], (before, after)
    log = [json.loads(line) for line in vm.check("cat /run/log/ask.jsonl").splitlines()]
    assert [(e["prompt"], e["tool"], e["service"], e["confirmed"]) for e in log] == [
        ("restart nodus", "restart", "nodus", False), ("restart nodus", "restart", "nodus", True)], log

    # The voice layer: a request spoken by espeak-ng, heard by PocketSphinx.
    vm.check("espeak-ng -s 140 -w /tmp/request.wav 'show the logs of modules'", timeout=120)
    out = vm.check("spirit ask --listen /tmp/request.wav --dry-run 2>&1", timeout=300)
    assert "heard: show the logs of modules" in out and '"tool":"logs","service":"modules"' in out, out
    out = vm.check("spirit ask 'is nexus running?' --speak-to /tmp/answer.wav && echo $(head -c 4 /tmp/answer.wav)", timeout=120)
    assert out.startswith("nexus is running") and out.endswith("RIFF"), out


def test_a_tampered_pack_is_left_out_and_crom_ai_off_leaves_it(boot, ai_media, tmp_path):
    tampered = tmp_path / "tampered.img"
    shutil.copyfile(ai_media, tampered)
    # The pack's manifest with a field changed after it was signed.
    listing = subprocess.run(["debugfs", "-R", f"cat /models/{MODEL}.json", str(tampered)], capture_output=True, text=True, check=True).stdout
    manifest = json.loads(listing)
    manifest["license"] = "MIT"
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    subprocess.run(["debugfs", "-w", "-R", f"rm /models/{MODEL}.json", str(tampered)], check=True, capture_output=True)
    subprocess.run(["debugfs", "-w", "-R", f"write {tmp_path / 'm.json'} /models/{MODEL}.json", str(tampered)], check=True, capture_output=True)
    vm = boot("", disks=[Disk(str(tampered), id="media")], memory_mib=2048)
    vm.expect(rf"spirit: model {MODEL}: left out: the model {MODEL} from .* is refused: the manifest's signature is not valid", 240)
    vm.expect(r"^spirit: ready", 300)
    assert "no models" in vm.check("spirit ai models")
    vm.kill()

    vm = boot("crom.ai=off", disks=[Disk(str(ai_media), id="media")], memory_mib=2048)
    vm.expect(r"^spirit: ready", 300)
    assert "no models" in vm.check("spirit ai models")
    ai = service(vm, "ai")
    assert "crom.ai=off" in (ai.get("detail") or "") + (ai.get("last_exit") or ""), ai
