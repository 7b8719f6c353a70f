# shellcheck shell=bash
# install_ca_bundle STAGE: the CA bundle Spirit's HTTPS client trusts, at
# STAGE/etc/ssl/certs/ca-certificates.crt (the path Debian's
# ca-certificates writes and Spirit reads): this machine's Debian bundle,
# then EXTRA_CA's certificates if set (a private CA; the VM test's).
install_ca_bundle() {
    local stage=$1 bundle=/etc/ssl/certs/ca-certificates.crt
    [[ -s $bundle ]] || { echo "no CA bundle at $bundle (apt-get install ca-certificates)" >&2; return 1; }
    install -D -m 644 "$bundle" "$stage$bundle"
    if [[ -n ${EXTRA_CA:-} ]]; then
        grep -q "BEGIN CERTIFICATE" "$EXTRA_CA" 2>/dev/null || { echo "EXTRA_CA=$EXTRA_CA: no PEM certificate there" >&2; return 1; }
        cat "$EXTRA_CA" >> "$stage$bundle"
    fi
}
