#!/usr/bin/env bash
# Reference tools for the tests and the bench, fetched from Debian's archive and run in place:
#
#   target/reference-tools/bin/criu-4.2        CRIU 4.2.1, Debian forky (dumps inet sockets here)
#   target/reference-tools/bin/criu-4.1        CRIU 4.1.1, Debian trixie (the cross-restore tests)
#   target/reference-tools/bin/checkpointctl   checkpointctl (forky if it has it, else trixie)
#
# Debian 12's own criu (3.17) cannot dump on kernels 6.13+; newer CRIUs need a newer glibc than
# Debian 12's. So each suite's packages, with that suite's libc6 and every library they depend on,
# are downloaded by apt-get from the suite of the same archive this machine already uses, with a
# private sources list and a private apt state (the system's lists, caches and installed set are
# neither read nor changed), unpacked with dpkg-deb under target/reference-tools/<suite>/root, and
# each program is started through that suite's own dynamic loader (ld-linux-x86-64.so.2
# --library-path ...). Nothing is installed on the system.
#
# Usage: scripts/reference-tools.sh          fetch what is missing, print the bin directory
# A second call finds everything in place and returns at once. A run cut short is taken up
# again: a suite counts as done only once its root is complete (the `complete` stamp), and the
# packages already downloaded are kept. The cache lives in $CARGO_TARGET_DIR (default target/),
# so `cargo clean` removes it.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
case $target in /*) ;; *) target=$repo/$target ;; esac
cache=$target/reference-tools
bin=$cache/bin

# suite PACKAGE(S): what to fetch from each suite (their dependencies come along).
FORKY_PACKAGES=(criu)
TRIXIE_PACKAGES=(criu)

have_all() {
    local t
    for t in criu-4.2 criu-4.1 checkpointctl; do
        [ -x "$bin/$t" ] || return 1
    done
    [ -e "$cache/forky/complete" ] && [ -e "$cache/trixie/complete" ]
}

if have_all; then
    echo "$bin"
    exit 0
fi

mkdir -p "$cache"
# One fetch at a time (two `make test` in the same tree, say).
exec 9>"$cache/lock"
flock 9
if have_all; then
    echo "$bin"
    exit 0
fi

# The archive this machine's Debian comes from: the first URI of its main Debian source.
archive_uri() {
    local uri=
    if [ -r /etc/apt/sources.list.d/debian.sources ]; then
        uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
            /etc/apt/sources.list)
    fi
    [ -n "$uri" ] || { echo "reference-tools: no Debian archive found in the apt sources" >&2; exit 1; }
    echo "$uri"
}

# apt_private SUITE ARGS...: apt-get with every file it reads or writes under the suite's folder.
apt_private() {
    local d=$cache/$1
    shift
    apt-get -q \
        -o "Dir::Etc::sourcelist=$d/apt/sources.list" -o "Dir::Etc::sourceparts=$d/apt/none" \
        -o "Dir::Etc::preferences=$d/apt/none/preferences" -o "Dir::Etc::preferencesparts=$d/apt/none" \
        -o "Dir::State=$d/apt/state" -o "Dir::State::Lists=$d/apt/lists" \
        -o "Dir::State::status=$d/apt/status" -o "Dir::Cache=$d/apt/cache" \
        -o "Dir::Cache::archives=$d/apt/archives" -o "Debug::NoLocking=1" \
        -o "APT::Sandbox::User=root" -o "APT::Install-Recommends=false" \
        -o "Acquire::Languages=none" "$@"
}

# lists SUITE: the suite's package lists, in its private state.
lists() {
    local d=$cache/$1
    mkdir -p "$d/apt/lists/partial" "$d/apt/archives/partial" "$d/apt/state" "$d/apt/cache" "$d/apt/none"
    : >"$d/apt/status" # nothing installed: the whole closure is downloaded, libc6 included
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(archive_uri) $1 main" \
        >"$d/apt/sources.list"
    apt_private "$1" update -qq >&2
}

# fetch SUITE PACKAGE...: the packages and their dependency closure unpacked in SUITE/root.
fetch() {
    local suite=$1
    shift
    local d=$cache/$suite
    [ -e "$d/complete" ] && return 0
    echo "reference-tools: fetching ${*} from Debian $suite" >&2
    apt_private "$suite" install -y -qq --download-only libc6 "$@" >&2
    rm -rf "$d/root.partial"
    mkdir -p "$d/root.partial"
    local deb
    for deb in "$d"/apt/archives/*.deb; do
        dpkg-deb -x "$deb" "$d/root.partial"
    done
    [ -e "$d/root.partial/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" ] || {
        echo "reference-tools: $suite: no glibc loader after unpacking" >&2
        exit 1
    }
    rm -rf "$d/root"
    mv "$d/root.partial" "$d/root"
    # The versions unpacked, for the record (fixtures' README quotes them).
    for deb in "$d"/apt/archives/*.deb; do
        dpkg-deb -W --showformat='${Package} ${Version}\n' "$deb"
    done >"$d/versions"
    touch "$d/complete"
}

# has SUITE PACKAGE: whether SUITE offers PACKAGE (its lists fetched already).
has() {
    apt_private "$1" -qq install -s "$2" >/dev/null 2>&1
}

# wrapper NAME SUITE PROGRAM: bin/NAME runs SUITE's PROGRAM through SUITE's loader. It finds
# the cache from its own place, so the tree may move.
wrapper() {
    local name=$1 suite=$2 program=$3
    [ -e "$cache/$suite/root/$program" ] || {
        echo "reference-tools: $suite has no $program" >&2
        exit 1
    }
    mkdir -p "$bin"
    cat >"$bin/$name.partial" <<EOF
#!/bin/sh
# $name: /$program of Debian $suite, run through $suite's own glibc (scripts/reference-tools.sh).
root=\$(dirname "\$(readlink -f "\$0")")/../$suite/root
lib=\$root/usr/lib/x86_64-linux-gnu:\$root/lib/x86_64-linux-gnu
exec "\$root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "\$lib" "\$root/$program" "\$@"
EOF
    chmod 0755 "$bin/$name.partial"
    mv "$bin/$name.partial" "$bin/$name"
}

start=$(date +%s)
# checkpointctl goes with forky's CRIU when forky has it, else with trixie's.
ctl_suite=trixie
for suite in forky trixie; do
    [ -e "$cache/$suite/complete" ] || lists "$suite"
done
if [ -e "$cache/forky/root/usr/bin/checkpointctl" ] ||
    { [ ! -e "$cache/forky/complete" ] && has forky checkpointctl; }; then
    ctl_suite=forky
    FORKY_PACKAGES+=(checkpointctl)
else
    TRIXIE_PACKAGES+=(checkpointctl)
fi
fetch forky "${FORKY_PACKAGES[@]}"
fetch trixie "${TRIXIE_PACKAGES[@]}"

wrapper criu-4.2 forky usr/sbin/criu
wrapper criu-4.1 trixie usr/sbin/criu
wrapper checkpointctl "$ctl_suite" usr/bin/checkpointctl
for t in criu-4.2 criu-4.1; do
    "$bin/$t" --version >/dev/null || { echo "reference-tools: $bin/$t does not run" >&2; exit 1; }
done
echo "reference-tools: ready in $(($(date +%s) - start)) s" >&2
echo "$bin"
