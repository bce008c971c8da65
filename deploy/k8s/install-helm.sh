#!/usr/bin/env bash
# Installs helm for the chart's tests and for operators, built from the Go module proxy
# (no binary downloads are reachable from CI), into <kefu cache>/bin. Does nothing when the
# wanted version is already there, so it is cheap to call before every test run.
# Prints the absolute path of the helm binary as its last (only stdout) line.
#
#   deploy/k8s/install-helm.sh            # -> /root/.cache/kefu/bin/helm
#   KEFU_HELM_VERSION=v3.19.0 deploy/k8s/install-helm.sh
set -euo pipefail

# v3.21.x is the newest patch line whose go.mod (go 1.26) builds with the project's Go toolchain.
HELM_VERSION="${KEFU_HELM_VERSION:-v3.21.4}"
CACHE_DIR="${KEFU_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kefu}"
BIN_DIR="$CACHE_DIR/bin"
HELM="$BIN_DIR/helm"

log() { printf 'install-helm: %s\n' "$*" >&2; }

# Go's official tarball location, for environments whose PATH lacks it (CI, cron).
if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    PATH="/usr/local/go/bin:$PATH"
fi

# The module version recorded in the binary's build info; empty when unknown.
built_version() {
    command -v go >/dev/null 2>&1 || return 0
    go version -m "$1" 2>/dev/null | awk '$1 == "mod" && $2 == "helm.sh/helm/v3" { print $3 }'
}

is_current() {
    [[ -x "$HELM" ]] || return 1
    if ! command -v go >/dev/null 2>&1; then
        return 0  # cannot inspect without go, and cannot rebuild either: use what is there
    fi
    [[ "$(built_version "$HELM")" == "$HELM_VERSION" ]]
}

if is_current; then
    echo "$HELM"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    log "helm $HELM_VERSION is not in $BIN_DIR and 'go' is not on PATH."
    log "Install Go >= 1.26 (https://go.dev/dl/) or put a helm binary at $HELM, then rerun."
    exit 1
fi

mkdir -p "$BIN_DIR"
# Serialise concurrent callers (parallel test runs) so only one of them builds.
exec 9>"$BIN_DIR/.helm.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
    if is_current; then
        echo "$HELM"
        exit 0
    fi
fi

log "building helm $HELM_VERSION with $(go version | awk '{print $3}') (first time only, a few minutes)"
start=$(date +%s)
# Build into a scratch dir and move into place, so an interrupted build never leaves a
# half-written binary that later runs would trust.
tmp_bin="$(mktemp -d "$BIN_DIR/.helm-build.XXXXXX")"
trap 'rm -rf "$tmp_bin"' EXIT
# The ldflags give `helm version` the release number a release build would print.
if ! GOBIN="$tmp_bin" CGO_ENABLED=0 nice -n 10 go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2; then
    log "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION failed (see above)."
    log "Check that the Go module proxy is reachable (go env GOPROXY) and Go is >= 1.26."
    exit 1
fi
mv -f "$tmp_bin/helm" "$HELM"
log "built $HELM in $(( $(date +%s) - start ))s"
echo "$HELM"
