// swift-tools-version: 6.1
import PackageDescription

// Strict from day one (STYLE.md, lesson 12): Swift 6 mode, existential `any`
// spelled out, and imports visible only where they are written.
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "CromSpirit",
    products: [
        .executable(name: "spirit", targets: ["SpiritInit"]),
        // The initramfs's /bin/spirit: stage 1's commands only (SpiritBoot).
        .executable(name: "spirit-boot", targets: ["SpiritBoot"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
    ],
    targets: [
        // The C layer: the early constructor that mounts /proc before the
        // Swift runtime starts, fork/exec with async-signal-safe children,
        // and the syscalls Glibc does not expose to Swift.
        .target(name: "CSpirit"),
        // libblkid from Debian (libblkid-dev ships libblkid.a for the static link).
        .systemLibrary(name: "CBlkid", pkgConfig: "blkid", providers: [.apt(["libblkid-dev"])]),
        // libdrm from Debian (libdrm-dev ships libdrm.a): KMS for the HUD's display.
        .systemLibrary(name: "CDrm", pkgConfig: "libdrm", providers: [.apt(["libdrm-dev"])]),
        .target(
            name: "SpiritCore",
            dependencies: [
                "CSpirit",
                "CTLS",
                "CDrm",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "Overlay",
            dependencies: [
                "SpiritCore",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // Opt-in persistence: the archive codec (ustar + a SHA-256 trailer,
        // optionally ChaCha20-Poly1305 with a scrypt key), the selection of
        // the writable layer's changes, the medium's atomic write.
        .target(
            name: "Persistence",
            dependencies: [
                "SpiritCore",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // TLS for Net's HTTPS: a small C shim over mbedTLS, which links
        // statically from Debian's libmbedtls-dev (0.6 MB in `spirit`;
        // OpenSSL's static libraries would add about 4 MB: README, http
        // source). Only SpiritCore calls it (TLSSession, beside Socket).
        .target(
            name: "CTLS",
            linkerSettings: [.linkedLibrary("mbedtls"), .linkedLibrary("mbedx509"), .linkedLibrary("mbedcrypto")]
        ),
        // HTTP/1.1 and HTTPS over SpiritCore's Socket: the HTTP boot source,
        // the rescue tools' fetch and `spirit image fetch`.
        .target(
            name: "Net",
            dependencies: [
                "SpiritCore",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "BootCascade",
            dependencies: [
                "SpiritCore",
                "Net",
                "Overlay",
                "Nodus",
                "CBlkid",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "ModuleLoader",
            dependencies: [
                "SpiritCore",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        // Nodus: discovery on UDP 7331 and an NBD server and client.
        .target(
            name: "Nodus",
            dependencies: [
                "SpiritCore",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        // The network boot server (`spirit serve netboot`): proxy DHCP,
        // TFTP and HTTP with ranges, each a pure core and a thin I/O shell.
        .target(
            name: "Netboot",
            dependencies: [
                "SpiritCore",
                "Net",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        // The service supervisor of stage 2: service files, the state
        // machine (pure, driven by events), logs, the control socket.
        .target(
            name: "Supervisor",
            dependencies: [
                "SpiritCore",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        // libvterm from Debian (libvterm-dev ships libvterm.a): the VT state
        // machine behind Nexus's terminals.
        .systemLibrary(name: "CVTerm", pkgConfig: "vterm", providers: [.apt(["libvterm-dev"])]),
        // mujs (Debian's libmujs.a), the JavaScript engine of the HUD's
        // scripted widgets; QuickJS is not in Debian 12.
        .systemLibrary(name: "CMuJS", pkgConfig: "mujs", providers: [.apt(["libmujs-dev"])]),
        // Terminus PSF fonts as bytes in the binary (C23 #embed).
        // Compiled as C23, the standard #embed belongs to (SwiftPM has no
        // .c23 language standard yet).
        .target(
            name: "CNexusFont",
            exclude: ["terminus-8x16.psf", "terminus-16x32.psf", "FONT-LICENSE"],
            cSettings: [.unsafeFlags(["-std=c23"])]
        ),
        // Nexus, the HUD: its pure core (renderer, fonts, layout, widget
        // parsers, keys, screen model, terminal model) depends on SpiritCore
        // and its own two C targets, never on another daemon.
        .target(
            name: "Nexus",
            dependencies: ["SpiritCore", "CNexusFont", "CVTerm", "CMuJS", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strict
        ),
        // The Bridge: VMs over QEMU. A pure core (definitions, the QEMU
        // command line, the QMP and guest-agent codecs, the state machine)
        // and its I/O shell (`spirit vm daemon`), on SpiritCore only.
        .target(
            name: "VMManager",
            dependencies: ["SpiritCore", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strict
        ),
        // A/B upgrades of a stick: slots in GRUB's environment block, the
        // upgrade, mark-good and rollback plans as data, and the runner
        // that writes them (release files copied and hashed by Overlay's
        // ImageCopy, from HTTP by BootCascade's stream).
        .target(
            name: "Upgrade",
            dependencies: ["SpiritCore", "Overlay", "BootCascade", "Net", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strict
        ),
        .target(
            name: "AIRuntime",
            dependencies: ["SpiritCore", "Overlay", "BootCascade", "Net", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strict
        ),
        // The Sentinel: watches the kernel log, pressure, the RAM root,
        // temperatures and the supervisor's services; rules as data, with
        // Prometheus' pending/firing/resolved semantics; policy-gated
        // actions. A pure core and its I/O shell (`spirit sentinel`).
        .target(
            name: "Sentinel",
            dependencies: ["SpiritCore", "Net", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strict
        ),
        // PID 1's decisions (signal to action, the child table, restart
        // pacing, console and timeline bytes), in the Embedded Swift subset:
        // the same file is compiled into spirit-init (Sources/SpiritPID1,
        // built by the Makefile with swiftc's Embedded mode and musl) and
        // here, for its unit tests. No dependency, no import.
        .target(name: "InitCore", swiftSettings: strict),
        // The commands both spirit binaries have and their one dispatch
        // (MultiCall): the stage-1 boot worker, PID 1's helpers, the rescue
        // tools and what works before the system image is up. Nothing of
        // stage 2's daemons: the initramfs's binary is built from this.
        .target(
            name: "SpiritCommands",
            dependencies: [
                "SpiritCore",
                "AIRuntime",
                "ModuleLoader",
                "Overlay",
                "BootCascade",
                "Net",
                "Nodus",
                "Persistence",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        // spirit-boot, the initramfs's /bin/spirit: SpiritCommands alone.
        .executableTarget(
            name: "SpiritBoot",
            dependencies: ["SpiritCommands", "SpiritCore"],
            swiftSettings: strict
        ),
        // spirit, the system image's /bin/spirit: SpiritCommands and the
        // commands of a running system (StageTwoCommand).
        .executableTarget(
            name: "SpiritInit",
            dependencies: [
                "SpiritCommands",
                "SpiritCore",
                "AIRuntime",
                "Supervisor",
                "ModuleLoader",
                "Overlay",
                "BootCascade",
                "Net",
                "Nodus",
                "Netboot",
                "Nexus",
                "VMManager",
                "Persistence",
                "Upgrade",
                "Sentinel",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "AIRuntimeTests",
            dependencies: ["AIRuntime", "SpiritCore"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "SentinelTests",
            dependencies: ["Sentinel", "SpiritCore"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "UpgradeTests",
            dependencies: ["Upgrade", "SpiritCore"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PersistenceTests",
            dependencies: ["Persistence", "SpiritCore", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "SpiritCoreTests",
            dependencies: ["SpiritCore", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "OverlayTests",
            dependencies: ["Overlay", "SpiritCore", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "SupervisorTests",
            dependencies: ["Supervisor", "SpiritCore"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "NetTests",
            dependencies: ["Net", "SpiritCore"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BootCascadeTests",
            dependencies: ["BootCascade", "SpiritCore", "Nodus", "Overlay", "Net"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ModuleLoaderTests",
            dependencies: ["ModuleLoader", "SpiritCore"],
            exclude: ["Fixtures"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "NexusTests",
            dependencies: ["Nexus", "SpiritCore"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "VMManagerTests",
            dependencies: ["VMManager", "SpiritCore"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "InitCoreTests",
            dependencies: ["InitCore", "SpiritCore"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "NetbootTests",
            dependencies: ["Netboot", "SpiritCore", "Net"],
            exclude: ["Fixtures"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "SpiritCommandsTests",
            dependencies: ["SpiritCommands"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "NodusTests",
            dependencies: ["Nodus", "SpiritCore"],
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)

// The fuzz targets (fuzz/SpiritFuzz, one libFuzzer binary for every parser
// of outside bytes): only when SPIRIT_FUZZ is set, as `make fuzz` sets it
// with -sanitize=fuzzer and its own scratch path, so that `swift build`
// and `swift test` never build or link them (libFuzzer brings its own main).
if Context.environment["SPIRIT_FUZZ"] != nil {
    package.targets.append(
        .executableTarget(
            name: "SpiritFuzz",
            dependencies: ["SpiritCore", "Net", "Netboot", "Nodus", "ModuleLoader", "Supervisor", "VMManager", "Upgrade", "Persistence", "Sentinel"],
            path: "fuzz/SpiritFuzz",
            swiftSettings: strict
        )
    )
}
