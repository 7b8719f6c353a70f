"""An image larger than the RAM it would need is refused before the copy
starts, saying how much RAM it needs, how much there is and crom.ram.limit;
the cascade goes on (here: to the rescue shell). The manifest is signed with
the real key, so only its size stands in the way."""

import functools
import http.server
import os
import subprocess
import threading
from pathlib import Path

from conftest import ROOT
from test_cascade import source_reasons

SPIRIT = os.environ.get("SPIRIT_BINARY", str(ROOT / "out" / "spirit"))
SIGNING_KEY = Path(os.environ.get("SIGNING_KEY", Path.home() / ".config/crom-spirit/signing.key"))


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_an_image_larger_than_the_ram_is_refused_before_the_copy(boot, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    image = media / "rootfs.squashfs"
    with open(image, "wb") as f:
        f.truncate(3 << 30)  # sparse: 3 GiB of zeros, for a 1 GiB guest
    subprocess.run([SPIRIT, "image", "manifest", "--image", str(image), "--key", str(SIGNING_KEY), "--version",
                    subprocess.run([SPIRIT, "version"], capture_output=True, text=True, check=True).stdout.split()[1],
                    "--out", str(media / "manifest.json")], check=True)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(media)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    requests = []
    original = QuietHandler.do_GET

    def counting(self):
        requests.append(self.path)
        return original(self)

    QuietHandler.do_GET = counting
    try:
        vm = boot(f"crom.mode=http crom.http=http://10.0.2.2:{httpd.server_address[1]}/ crom.network.timeout=5",
                  nics=["user,model=virtio-net-pci"])
        vm.expect(r"^spirit: rescue: ", timeout=180)
        reason = source_reasons(vm)["http"]
        assert "rootfs.squashfs" in reason and "needs 3072 MiB of RAM and 64 MiB to run" in reason, reason
        assert "MiB available (crom.ram.limit is not set): refused before the copy" in reason, reason
        # Not a byte of the image was asked for (the manifest, and the list of layers it may stack).
        assert requests[0] == "/manifest.json" and not [r for r in requests if r.endswith(".squashfs")], requests
    finally:
        QuietHandler.do_GET = original
        httpd.shutdown()
        httpd.server_close()
