#!/usr/bin/env bash
# Build the drop-in images (the Dockerfile's target "base"), tagged as tiangolo's were:
#
#   scripts/build.sh                          latest, which is python3.13
#   scripts/build.sh python3.11 python3.11-slim
#   scripts/build.sh all                      every tag this host can build (3.12 needs a registry)
#   ARCH=arm64 scripts/build.sh python3.13-slim   under emulation, tagged asgi-server:python3.13-slim-arm64
#
# python3.X is on the full Python image (gcc, make, -dev headers: sdists build), python3.X-slim on the
# slim one. Each is built FROM the official python image where a registry answers, else from a local
# stand-in made from Debian packages (scripts/build-base-image.sh). One lock serves every Python: its
# markers pick what each needs. Environment: IMAGE (default asgi-server), ARCH (default the host's).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/host.sh
. scripts/host.sh

TAGS="python3.11 python3.11-slim python3.12 python3.12-slim python3.13 python3.13-slim python3.14 python3.14-slim"
LATEST=python3.13  # the newest Python of Debian stable (trixie), full like tiangolo's latest
image=${IMAGE:-asgi-server}
arch=${ARCH:-$(dpkg --print-architecture)}
native=$(dpkg --print-architecture)

all=0
requested=("$@")
[ ${#requested[@]} -gt 0 ] || requested=(latest)
if [ "${requested[0]}" = all ]; then
  all=1
  read -r -a requested <<<"$TAGS"
fi

ensure_engine
builder=(docker build)
if docker buildx version >/dev/null 2>&1; then
  builder=(docker buildx build --load)
elif [ -x /usr/bin/docker ]; then
  builder=(/usr/bin/docker build)  # Debian's client has BuildKit built in; the cache mounts need it
fi

# A foreign architecture is built without --platform: BuildKit would look for a base of another
# platform in a registry even when it is local. The RUN steps still run the base's own binaries
# (under qemu), so only the image's config names the wrong architecture: set it to the real one.
stamp_architecture() {
  local image=$1 arch=$2 work
  work=$(mktemp -d)
  docker save "$image" | tar -C "$work" -x
  python3 - "$work" "$arch" <<'EOF'
import hashlib, json, os, sys

work, arch = sys.argv[1], sys.argv[2]
with open(os.path.join(work, "manifest.json")) as file:
    manifest = json.load(file)
config_path = os.path.join(work, manifest[0]["Config"])
with open(config_path) as file:
    config = json.load(file)
config["architecture"] = arch
data = json.dumps(config, separators=(",", ":")).encode()
os.remove(config_path)
name = hashlib.sha256(data).hexdigest() + ".json"
with open(os.path.join(work, name), "wb") as file:
    file.write(data)
manifest[0]["Config"] = name
with open(os.path.join(work, "manifest.json"), "w") as file:
    json.dump(manifest, file)
EOF
  tar -C "$work" -c . | docker load -q >/dev/null
  rm -rf "$work"
}

for tag in "${requested[@]}"; do
  name=$tag
  [ "$tag" = latest ] && name=$LATEST
  case " $TAGS " in *" $name "*) ;; *) echo "unknown tag '$tag': expected latest, all or one of: $TAGS" >&2; exit 2 ;; esac
  python=${name#python}
  python=${python%-slim}
  variant=full
  [ "$name" != "${name%-slim}" ] && variant=slim
  if [ "$python" = 3.12 ] && ! base=$(PULL_ONLY=1 base_image "$python" "$variant" "$arch" 2>/dev/null); then
    echo "skipping $name: Python 3.12 exists only as the official python:3.12 image, and no registry answers" >&2
    [ "$all" = 1 ] && continue
    exit 1
  fi
  [ "$python" = 3.12 ] || base=$(base_image "$python" "$variant" "$arch")
  out=$image:$name
  [ "$arch" = "$native" ] || out=$out-$arch
  echo "building $out FROM $base" >&2
  foreign=()
  [ "$arch" = "$native" ] || foreign=(--build-arg SBOM_VALIDATE=--no-validate)
  DOCKER_BUILDKIT=1 "${builder[@]}" --target base --build-arg "PYTHON_IMAGE=$base" "${foreign[@]}" -t "$out" .
  [ "$arch" = "$native" ] || stamp_architecture "$out" "$arch"
  if [ "$tag" = latest ] || { [ "$all" = 1 ] && [ "$name" = "$LATEST" ]; }; then
    docker tag "$out" "$image:latest${out#"$image:$name"}"
  fi
done
