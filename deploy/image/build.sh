#!/usr/bin/env bash
# Builds the orgtrail runtime image FROM scratch out of a binary built on this host:
#
#   deploy/image/build.sh [BINARY] [TAG]
#
# BINARY defaults to target/release/orgtrail (build it first: `cargo build --release --locked`),
# TAG to localhost/orgtrail:latest. The image holds a stripped copy of the binary, exactly the
# shared libraries `ldd` lists for it (at the paths the binary's loader looks for them), an
# /etc/passwd naming uid 65532 `nonroot`, and /var/lib/orgtrail (data and spool) owned by that
# uid and declared a VOLUME. It runs as 65532:65532 with `orgtrail` as its entrypoint, and works
# with a read-only root filesystem (`--read-only`): orgtrail writes only under its volume.
# It is the same layout as deploy/Dockerfile's image (distroless cc, nonroot), for machines
# that cannot pull a base image. Uses podman, or docker when podman is absent
# (ORGTRAIL_ENGINE=docker|podman chooses). Prints the tag on standard output when done.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
binary="${1:-$root/target/release/orgtrail}"
tag="${2:-localhost/orgtrail:latest}"

die() { echo "build.sh: $*" >&2; exit 1; }

[ -f "$binary" ] || die "no binary at $binary (build it with: cargo build --release --locked)"
[ -x "$binary" ] || die "$binary is not executable"

engine="${ORGTRAIL_ENGINE:-}"
if [ -z "$engine" ]; then
    if command -v podman >/dev/null 2>&1; then
        engine=podman
    elif command -v docker >/dev/null 2>&1; then
        engine=docker
    else
        die "neither podman nor docker is installed"
    fi
fi
command -v "$engine" >/dev/null 2>&1 || die "$engine is not installed"

ctx="$(mktemp -d "${TMPDIR:-/tmp}/orgtrail-image.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/etc" "$ctx/state/var/lib/orgtrail/data" \
    "$ctx/state/var/lib/orgtrail/spool" "$ctx/state/home/nonroot"

# The binary, stripped of its symbols (a third of the size; backtraces keep function names
# only where the binary had them). A plain copy when strip is not installed.
if command -v strip >/dev/null 2>&1; then
    strip --strip-all -o "$ctx/rootfs/usr/local/bin/orgtrail" "$binary"
else
    echo "build.sh: strip not found, copying the binary unstripped" >&2
    cp "$binary" "$ctx/rootfs/usr/local/bin/orgtrail"
fi
chmod 0755 "$ctx/rootfs/usr/local/bin/orgtrail"

# Exactly the shared libraries ldd lists, each at the path the loader resolved it to (the
# dynamic loader itself at the absolute path written in the binary). Symlinks are followed,
# so the image holds the files themselves under the names the binary asks for.
ldd_out="$(ldd "$binary" 2>&1)" || die "ldd $binary failed: $ldd_out"
if grep -q 'not a dynamic executable\|statically linked' <<<"$ldd_out"; then
    libs=()
else
    mapfile -t libs < <(awk '
        $2 == "=>" && $3 ~ /^\// { print $3; next }   # libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)
        $2 == "=>" && $3 == "not" { print "MISSING " $1; next }
        $1 ~ /^\// { print $1 }                       # /lib64/ld-linux-x86-64.so.2 (0x...)
    ' <<<"$ldd_out")
fi
for lib in "${libs[@]}"; do
    case "$lib" in
        MISSING*) die "ldd: ${lib#MISSING } not found for $binary" ;;
    esac
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
done

cat > "$ctx/rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat > "$ctx/rootfs/etc/group" <<'GROUP'
root:x:0:
nonroot:x:65532:
GROUP

# Keep in step with deploy/Dockerfile's runtime stage.
cat > "$ctx/Containerfile" <<'CONTAINERFILE'
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 state/ /
ENV HOME=/home/nonroot
USER 65532:65532
WORKDIR /var/lib/orgtrail
VOLUME ["/var/lib/orgtrail"]
ENTRYPOINT ["/usr/local/bin/orgtrail"]
CONTAINERFILE

echo "build.sh: $engine build $tag from $binary (libraries: ${libs[*]:-none})" >&2
"$engine" build --quiet -t "$tag" -f "$ctx/Containerfile" "$ctx" >/dev/null
echo "$tag"
