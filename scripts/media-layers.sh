# copy_layers MEDIA_ROOT LAYER.squashfs…: puts add-on layers (each with the
# signed NAME.json beside it, from make layer) in MEDIA_ROOT/layers/ with the
# index the HTTP source reads (one name a line); prints their total bytes.
# Used by mkiso.sh and mknetboot.sh.
copy_layers() {
    local root=$1 layer name bytes=0
    shift
    for layer in "$@"; do
        name=$(basename "$layer" .squashfs)
        if [[ ! -r $layer || ! -r ${layer%.squashfs}.json ]]; then
            echo "no layer $layer with its ${layer%.squashfs}.json (make layer NAME=$name)" >&2
            return 1
        fi
        mkdir -p "$root/layers"
        cp "$layer" "${layer%.squashfs}.json" "$root/layers/"
        echo "$name" >> "$root/layers/index"
        bytes=$((bytes + $(stat -c %s "$layer")))
    done
    echo "$bytes"
}
