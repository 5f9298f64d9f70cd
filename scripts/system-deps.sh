#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need (clang, llvm,
# libbpf headers, bpftool, clang-format, rustfmt) when run as root; otherwise
# names what is missing and how to get it.
set -euo pipefail

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need clang clang
need llvm-objdump llvm
need bpftool bpftool
need clang-format clang-format
need rustfmt rustfmt
[ -f /usr/include/bpf/bpf_helpers.h ] || missing+=(libbpf-dev)
ldconfig -p 2>/dev/null | grep -q 'libbpf\.so\.1' || missing+=(libbpf1)

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]}" >&2
    echo "install them as root: apt-get update && apt-get install -y ${missing[*]}" >&2
    echo "(tests that need them skip with a reason until then)" >&2
    exit 0
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
