import Glibc
import SpiritCore

package enum Usage {
    /// A usage error: the message on stderr, then the usage (the whole
    /// program's, or a command's own); exit code 100.
    package static func fail(_ message: String, usage: String = text) -> Int32 {
        Console.tool.error(message)
        FileHandleless.writeError(usage + "\n")
        return 100
    }

    /// `spirit gpu`'s lines (GPUCommand, in the full binary only).
    package static let gpuCommands = """
      gpu status [--root DIR]
                      display controllers and devices on vfio-pci: IOMMU group, driver, who holds /dev/dri/card*
      gpu plan passthrough|return VM|--device BDF… [--dry-run] [--root DIR]
                      the plan as shell: whole IOMMU groups, the HUD stopped for a display, vfio-pci or the native driver
      gpu passthrough VM
                      the devices of VM's [gpu] section (their whole IOMMU groups) to vfio-pci, then VM started; when it
                      ends, the VM manager gives them back and starts the HUD
      gpu return [VM]
                      after VM has ended: its devices back now (what the VM manager does when it ends); no VM: every VM's
      gpu passthrough --device BDF…
                      give the devices to vfio-pci (for a VM started by hand); a failing step undoes the done ones
      gpu return --device BDF…
                      back to their native drivers (loaded if they are not), the HUD started again
    """

    /// The whole command surface: the commands of both binaries, then those
    /// only the full one has (StageTwoCommand), under their own heading.
    package static let text = """
    usage: spirit <command>
      boot-worker     the stage-1 boot, run by PID 1 (spirit-init) in a child
      poweroff        ask PID 1 to stop every process and power off
      reboot          ask PID 1 to stop every process and restart
      halt            ask PID 1 to stop every process and halt
      init-journal KIND [KEY VALUE]...
                      a record of PID 1's in the journal, as process init (run by PID 1)
      shutdown-finish reboot|halt|poweroff STARTED_US
                      the end of a shutdown once every process has stopped: the journal saved to the boot
                      medium, swap off, unmount (run by PID 1, which then calls reboot(2))
      image keygen KEY
                      make an Ed25519 signing key (KEY, mode 0600) and its public half (KEY.pub)
      image manifest --image FILE --key KEY --version V [--build-time SECONDS] [--block-size BYTES] [--out FILE]
                      write the signed manifest of a system image (stdout without --out)
      image verify --image FILE --manifest FILE --public-key FILE
                      check an image against its manifest and the manifest's signature
      image fetch --url BASE --public-key FILE --out FILE
                      download the image under an http:// base URL as the HTTP boot source does: the
                      signed manifest checked, the image hashed as it is written (removed on a mismatch)
      image check-version VERSION
                      exit 0 if VERSION is a version as manifests and MIN_VERSION take it (0.1.0, 0.2.0-rc.1), else 1
      install parasite TARGET [--media DIR] [--dry-run] [--force]
                      copy the media into TARGET/CromSpirit (a mounted NTFS partition) with a GRUB entry and a bcdedit script
    \(ModulesCommand.commands)
      nodus serve --image FILE --manifest FILE [--listen ADDR] [--nbd-port N] [--discovery-port N]
                  [--advertise IP] [--public-key FILE] [--layers DIR] [--models DIR]
                  [--max-clients N (256)] [--max-per-address N (32)] [--handshake-ms N (10000)]
                  [--stall-ms N (30000)] [--idle-seconds N (600)]
                      serve a system image and its manifest over NBD and answer discovery (UDP 7331; port 0: off),
                      and the layers and model packs in DIR (each checked; a bad one is left out and said)
      nodus info --server ADDR[:PORT] [--export NAME]
                      an export's size and flags
      nodus fetch --server ADDR[:PORT] [--export NAME] [--out FILE]
                      copy an export into FILE (default stdout), printing its SHA-256 on stderr
      nodus fetch --peers ADDR[:PORT],ADDR[:PORT]… [--public-key FILE] [--stall-ms N (5000)] [--out FILE]
                      copy the newest image the peers serve as a boot does: from all of them at once, each block
                      checked against the signed block list (a peer that stalls, vanishes or sends a bad block is dropped)
      nodus attach --server ADDR[:PORT] [--export NAME] [--device /dev/nbdN]
                      make /dev/nbdN (default /dev/nbd0) the export, until detach
      nodus detach DEVICE
                      end the connection of /dev/nbdN
      nodus hydrate --peers ADDR[:PORT],… --manifest FILE --image FILE [--public-key FILE] [--device /dev/nbdN]
                    [--ready FILE] [--state FILE] [--timeline DIR] [--stall-ms N (5000)]
                      the streaming boot's copy (crom.nodus.stream=1): serve the image as /dev/nbdN with a read-only
                      loop over it (named in --ready) while it is copied into FILE, each block checked; then move
                      the loop onto FILE (LOOP_CHANGE_FD) and let the peers go
      net scan [--to ADDR,...] [--port N] [--timeout MS]
                      look for Nodus peers (broadcast on every interface that is up) and list them
      time COMMAND [ARGUMENT...]
                      run a command; print how long it took in ms of CLOCK_BOOTTIME on stderr
      boot-plan --manifest FILE --mem-total SIZE [--upper zram|tmpfs] [--ram-limit MiB] [--algorithms LIST] [--zram N]
                      the stage-1 RAM-root plan and switch_root as shell, without root (crom.debug=1 prints it at boot)
      timeline [FILE] the boot timeline as a table (FILE: a timeline.json; default /run/spirit/timeline.json)
      journal [--json] [--follow] [-n N] [--dir DIR]
                      the journal of boot decisions, service starts and stops, upgrades, spirit ask's and the
                      Sentinel's actions (/run/log/journal.jsonl, each record chained to the one before by SHA-256)
      journal verify [--dir DIR]
                      check the chain: exit 0 when whole, 1 naming the first record edited, removed, reordered or cut
      diag            (spirit-diag) hardware, modules, block devices, network, why each boot source gave up, timeline
      mount DEVICE    (spirit-mount) mount a device read-only on /mnt/<name> (NTFS with ntfs3 or ntfs-3g)
      fetch URL       (spirit-fetch) check the signed manifest under an http:// base URL and continue the boot from it
      usb [DEVICE]    (spirit-usb) list USB disks, or write the running media to one after a confirmation
      version         print the version
    The commands of a running system, in the system image's spirit only (not in the initramfs's):
      supervise [--root DIR] [--record KIND [KEY VALUE]...]
                      the service supervisor, run by PID 1 in stage 2 (DIR: a tree with etc/spirit/services, for tests);
                      --record: PID 1's journal record, written before any service starts
      ctl COMMAND     spiritctl: status, start, stop, restart, logs, timeline, sentinel, poweroff, reboot ('spirit ctl help')
      layer list [--json]
                      the add-on layers in RAM: stacked at boot (crom.layers=) or merged over /usr at run time
      layer add NAME [--from URL|DIR|peer|nodus://ADDR]
                      fetch a signed layer (from the HTTP server this Spirit booted from without --from), check it
                      as it is copied into RAM, mount it and merge it over /usr: its programs work at once
      layer remove NAME
                      take a layer added at run time away (refused while a process uses it)
      layer manifest --image DIR/NAME.squashfs --key KEY --version V --bases "V…" [--build-time S] [--out FILE]
                      write the signed manifest of a layer (make layer does); bases: the image versions it fits
      layer verify --image FILE --manifest FILE --public-key FILE
                      check a layer against its manifest and the manifest's signature
      serve netboot [--media DIR] [--loaders DIR] [--http-port N (80)] [--tftp-port N (69)] [--dhcp-port N (67)]
                    [--pxe-port N (4011)] [--nodus ADDR[:PORT]] [--nodus-port N] [--append ARGS]
                      be the LAN's boot server (the netboot service): proxy DHCP for PXE clients only (never an
                      address), iPXE over TFTP, and over HTTP (with ranges) the media, boot.ipxe and ipxe.efi
                      (UEFI HTTP boot); a booted PC takes its image from the Nodus peer (port 0: that server off)
      nexus           the HUD on the screen (its service); with mode bubble|dashboard|terminals, dump,
                      screenshot FILE.png or stats [--json]: ask the running HUD
      vm define FILE | list [--json] | start NAME [--fresh] | stop NAME [--save] [--force] [--timeout S]
         | save NAME | restore NAME | pause NAME | resume NAME | exec NAME [--timeout S] [--stdin] -- CMD... | console NAME | daemon
                      VMs over QEMU (the vm service); @NAME CMD... runs CMD in NAME's guest
      sentinel [--root DIR] [--metrics ADDR:PORT|off] | sentinel signals
                      the Sentinel (its service): watches the kernel log, pressure, the RAM root, temperatures and
                      the services against /etc/spirit/sentinel/rules.toml; spiritctl sentinel lists its incidents
      metrics [--root DIR]
                      the machine and its services in Prometheus' text format (the Sentinel serves it on
                      http://127.0.0.1:9100/metrics)
    \(gpuCommands)
      ai serve [--listen ADDR:PORT] [--keep-alive S|never] [--context N] [--threads N] [--preload NAME] [--load-timeout S]
                      the AI runtime (the ai service): llama-server from the ai layer, a model loaded when a request asks,
                      OpenAI's /v1/chat/completions and ollama's /api/tags on http://127.0.0.1:11434
      ai status | models [--json] | pull [NAME] [--from URL|DIR|peer|nodus://ADDR] | load NAME | unload | remove NAME
                      the model packs in RAM (pulled as layers are, from the HTTP server this Spirit booted from without
                      --from: signature, then SHA-256 while copied) and the loaded one
      ai pack --gguf F --name NAME --key K --license SPDX --source TEXT --out DIR
                      sign a GGUF as a model pack (make model-pack)
      ask "QUESTION OR REQUEST" [--yes] [--json]
                      status, logs, start/stop/restart a service, memory, timeline in plain words; what the parser cannot
                      read goes to the model under a schema; changes are confirmed (or --yes) and logged to /run/log/ask.jsonl
      persist status|diff|commit|restore [--paths /etc,/root] [--passphrase-file FILE]
                      keep the writable layer's changes under the paths (persist.toml; /etc and /root) as one archive on the
                      boot medium, restored at boot (crom.persist=on); restore: by hand, e.g. an encrypted one
      upgrade [--from URL|DIR] [--dry-run] [--allow-downgrade] | upgrade status | upgrade rollback [--dry-run]
                      write a newer signed release (make netboot's folder, over http:// or from a directory) into the
                      stick's other slot and arm it for one try; kept once its services are up (the upgrade service),
                      else the next boot is back on this slot; --dry-run prints every step as shell
    Exit codes: 0 success, 100 usage error, 111 system failure.
    """
}

/// stderr without Foundation's FileHandle.
package enum FileHandleless {
    package static func writeError(_ text: String) {
        try? Kernel.write(2, text, "standard error")
    }
}
