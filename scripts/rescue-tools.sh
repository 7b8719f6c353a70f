# link_rescue_tools ROOT: the rescue tools (spirit-diag, spirit-mount,
# spirit-fetch, spirit-usb, spirit-net) in ROOT/bin, as links to the
# multi-call binary, which runs `spirit diag` when started as spirit-diag
# (RescueTools.names in Sources/SpiritCommands/RescueTools.swift). Sourced by
# mkinitramfs.sh and mkrootfs.sh, so that stage 1 and stage 2 have the same
# tools on their PATH.
link_rescue_tools() {
    local root=$1 tool
    for tool in diag mount fetch usb net; do
        ln -sfn spirit "$root/bin/spirit-$tool"
    done
}
