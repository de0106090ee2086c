#!/usr/bin/env bash
# Builds the example images locally from Debian's busybox-static (no registry needed):
#   example-image:latest  — what examples/example-daemonset.yaml runs
#   example-image:v2      — the same with another tag, to try an update
set -euo pipefail
BUSYBOX=${BUSYBOX:-/bin/busybox}
if ! file -L "$BUSYBOX" 2>/dev/null | grep -q "statically linked"; then
  if ! ldd "$BUSYBOX" 2>&1 | grep -q "not a dynamic executable"; then
    echo "error: $BUSYBOX is not a static busybox; install it with: apt-get install busybox-static" >&2
    exit 1
  fi
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$BUSYBOX" "$ctx/busybox"
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
CMD ["sh"]
DOCKERFILE
docker build -q -t example-image:latest -t example-image:v2 "$ctx"
echo "built example-image:latest and example-image:v2"
