#!/usr/bin/env bash
# Checks that every option a kernel-config fragment asks for survived
# merge_config.sh + olddefconfig (an unmet dependency or a choice silently
# drops one). Lists each one that did not and exits 1.
#
#   scripts/kernel-config-check.sh FRAGMENT DOT_CONFIG KERNEL_SOURCE
#
# A fragment line just below "# optional: <why>" may name a symbol that
# this kernel's Kconfig does not define at all (an option of another kernel
# version); any other symbol the source does not define is an error, so a
# typo cannot pass.
set -euo pipefail

fragment=$1 config=$2 source=$3
die() { echo "kernel-config-check: $*" >&2; exit 2; }
[[ -r $fragment ]] || die "no fragment at $fragment"
[[ -r $config ]] || die "no .config at $config"
[[ -d $source ]] || die "no kernel source at $source"
# A fragment checked against itself passes: the .config must be one that
# Kconfig wrote (olddefconfig), on top of a base config.
grep -q '^# Automatically generated file; DO NOT EDIT.' "$config" \
    || die "$config is not a .config written by Kconfig (run make olddefconfig on it first)"
grep -q '^CONFIG_64BIT=y' "$config" || die "$config is not a complete x86_64 configuration"

# Every symbol the source's Kconfig files define (config X / menuconfig X).
defined=$(mktemp)
trap 'rm -f "$defined"' EXIT
find "$source" -name 'Kconfig*' -type f -print0 \
    | xargs -0 sed -n -E 's/^[[:space:]]*(menu)?config[[:space:]]+([A-Za-z0-9_]+).*/\2/p' \
    | LC_ALL=C sort -u > "$defined"

failures=0 asked=0 optional=0
report() { echo "kernel-config-check: $1" >&2; failures=$((failures + 1)); }
previous=""
while IFS= read -r line || [[ -n $line ]]; do
    symbol="" wanted=""
    if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
        symbol=${BASH_REMATCH[1]} wanted=${BASH_REMATCH[2]}
    elif [[ $line =~ ^#[[:space:]](CONFIG_[A-Za-z0-9_]+)[[:space:]]is[[:space:]]not[[:space:]]set ]]; then
        symbol=${BASH_REMATCH[1]} wanted=n
    fi
    if [[ -n $symbol ]]; then
        asked=$((asked + 1))
        got=$(sed -n -E "s/^${symbol}=(.*)$/\1/p" "$config")
        if ! grep -qx "${symbol#CONFIG_}" "$defined"; then
            if [[ $previous == "# optional:"* ]]; then
                optional=$((optional + 1))
                echo "kernel-config-check: $symbol is not in this kernel (${previous#\# optional: })"
            else
                report "$symbol=$wanted: this kernel's Kconfig has no such symbol"
            fi
        elif [[ $wanted == n ]]; then
            [[ -z $got || $got == n ]] || report "$symbol: asked off, is $got"
        elif [[ $got != "$wanted" ]]; then
            report "$symbol: asked $wanted, is ${got:-off} (a dependency or a choice dropped it)"
        fi
    fi
    previous=$line
done < "$fragment"

if ((failures)); then
    echo "kernel-config-check: $failures of $asked options in $fragment did not survive" >&2
    exit 1
fi
echo "kernel-config-check: all $((asked - optional)) options of $fragment survived ($optional not in this kernel, marked optional)"
