#!/usr/bin/env bash
# What the tests need besides the Rust toolchain, installed when missing (`make test` runs this
# first): Debian 12 packages through apt-get, then the reference tools (reference-tools.sh).
# With everything in place it changes nothing and takes a moment.
#
#   criu                 crit, the image-format oracle (Debian 12's criu cannot dump on kernels
#                        6.13+; its crit decodes fine), and the `criu` podman asks for a version
#   runc                 the delegate runtime stasis-runc hands its other verbs to
#   busybox-static       the containers' userland
#   containerd, umoci    ctr and the runc v2 shim; the busybox image, made without a registry
#   gcc, libc6-dev       the C test workloads
#   podman, conmon, catatonit, containernetworking-plugins
#                        the podman tests, without recommends: crun, podman's default runtime,
#                        cannot run on these hybrid cgroups (the tests name stasis-runc anyway)
#   redis-server, redis-tools, nginx-light, python3
#                        the network and unix-socket tests' servers and clients
#   iproute2, iptables, nftables
#                        the network lock's rules; what a container's own network namespace is
#                        saved and made again with
#   the rest             tools the tests and scripts call (unshare, nsenter, mount, flock, tar...)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

packages=(criu make gcc libc6-dev runc busybox-static containerd umoci tar hostname util-linux mount iproute2 iptables nftables
    ca-certificates debian-archive-keyring redis-server redis-tools nginx-light python3)
bare_packages=(podman conmon catatonit containernetworking-plugins)

missing() {
    local p
    for p in "$@"; do
        dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null | grep -q ' installed$' || echo "$p"
    done
}

want=$(missing "${packages[@]}")
want_bare=$(missing "${bare_packages[@]}")
if [ -n "$want$want_bare" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "test-deps: missing packages:" $want $want_bare "- run as root (apt-get install)" >&2
        exit 1
    fi
    echo "test-deps: installing" $want $want_bare >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086 # word lists on purpose
    [ -z "$want" ] || apt-get install -y -qq $want >/dev/null
    # shellcheck disable=SC2086
    [ -z "$want_bare" ] || apt-get install -y -qq --no-install-recommends $want_bare >/dev/null
fi
command -v crit >/dev/null || { echo "test-deps: crit is missing although criu is installed" >&2; exit 1; }

"$here/reference-tools.sh" >/dev/null
