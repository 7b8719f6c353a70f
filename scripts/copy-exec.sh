# copy_exec BINARY ROOT [DESTINATION]: copies a dynamically linked program
# into ROOT with the shared libraries and the loader it needs, at their own
# paths (what initramfs-tools' copy_exec does).
copy_exec() {
    local binary=$1 root=$2 destination=${3:-$1}
    rm -f "$root$destination"
    install -D -m 755 "$binary" "$root$destination"
    local library
    for library in $(ldd "$binary" | awk '/=> \// { print $3 } /^\t\// { print $1 }'); do
        [[ -e $root$library ]] || install -D -m 755 "$library" "$root$library"
    done
}
