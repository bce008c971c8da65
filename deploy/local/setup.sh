#!/usr/bin/env bash
# Prepare the local stack's artefacts, idempotently, from package registries only:
#   - Apache Kafka jars from Maven Central (deploy/local/kafka/pom.xml) -> <cache>/kafka-<v>/libs
#   - FerretDB built from the Go module proxy (deploy/local/ferretdb), with the small fixes in
#     deploy/local/ferretdb/patches applied to its source              -> <cache>/bin/ferretdb-<v>-<patches>
# <cache> is $KEFU_CACHE_DIR, else ${XDG_CACHE_HOME:-~/.cache}/kefu (as services/runtime/settings.py).
# Each artefact is only fetched or built when missing, so a second run takes seconds.
# `kefu stack up` (kefu/localstack.py) runs what this prepares.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_dir="${KEFU_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kefu}"
started_at=$(date +%s.%N)

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# Versions come from the build files, so there is one place to change them.
kafka_version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")"
ferretdb_version="$(awk '$1 == "require" && $2 == "github.com/FerretDB/FerretDB" { print $3 }' \
  "$here/ferretdb/go.mod")"
[[ -n "$kafka_version" ]] || die "no <kafka.version> in $here/kafka/pom.xml"
[[ -n "$ferretdb_version" ]] || die "no 'require github.com/FerretDB/FerretDB vX' line in $here/ferretdb/go.mod"

kafka_libs="$cache_dir/kafka-$kafka_version/libs"
kafka_stamp="$kafka_libs/.kefu-pom.sha256"
# The binary's name carries a digest of the patches, so editing a patch rebuilds it
# (kefu/localstack.py computes the same name).
patch_files=()
while IFS= read -r f; do patch_files+=("$f"); done < <(LC_ALL=C ls "$here"/ferretdb/patches/*.patch 2>/dev/null)
patch_sum="$(cat "${patch_files[@]}" </dev/null | sha256sum | cut -c1-12)"
ferretdb_bin="$cache_dir/bin/ferretdb-$ferretdb_version-$patch_sum"

# --------------------------------------------------------------------------- prerequisites
missing=()
java_major=0
if command -v java >/dev/null 2>&1; then
  # "17.0.15" -> 17, "1.8.0_402" -> 8
  java_version="$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)"
  java_major="${java_version%%.*}"
  [[ "$java_major" == 1 ]] && java_major="$(cut -d. -f2 <<<"$java_version")"
  [[ "$java_major" =~ ^[0-9]+$ ]] || java_major=0
fi
((java_major >= 17)) || missing+=("Java 17 or newer (found: ${java_version:-none}) -> apt-get install openjdk-17-jre-headless")

need_mvn=0
need_go=0
pom_sum="$(sha256sum "$here/kafka/pom.xml" | cut -d' ' -f1)"
if [[ ! -f "$kafka_stamp" || "$(cat "$kafka_stamp")" != "$pom_sum" ]]; then need_mvn=1; fi
if [[ ! -x "$ferretdb_bin" ]]; then need_go=1; fi

if ((need_mvn)) && ! command -v mvn >/dev/null 2>&1; then
  missing+=("Maven (mvn), to fetch the Kafka jars -> apt-get install maven")
fi
if ((need_go)); then
  if ! command -v go >/dev/null 2>&1; then
    missing+=("Go 1.21 or newer, to build FerretDB -> apt-get install golang-go (or https://go.dev/dl/)")
  else
    go_version="$(go env GOVERSION 2>/dev/null || true)"   # e.g. go1.22.5
    go_minor="$(sed -n 's/^go1\.\([0-9]*\).*/\1/p' <<<"$go_version")"
    # go >= 1.21 fetches the toolchain go.mod asks for (1.24) from the module proxy by itself.
    if [[ -z "$go_minor" ]] || ((go_minor < 21)); then
      missing+=("Go 1.21 or newer (found: ${go_version:-unknown}) -> https://go.dev/dl/ or a newer golang-go package")
    fi
  fi
  command -v patch >/dev/null 2>&1 || missing+=("patch, to apply deploy/local/ferretdb/patches -> apt-get install patch")
fi
if ((${#missing[@]})); then
  printf 'setup: missing prerequisites:\n' >&2
  printf '  - %s\n' "${missing[@]}" >&2
  printf 'On Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y openjdk-17-jre-headless maven golang-go\n' >&2
  exit 1
fi

# --------------------------------------------------------------------------- Kafka jars
step_at=$(date +%s.%N)
if ((need_mvn)); then
  say "fetching Kafka $kafka_version jars from Maven Central into $kafka_libs ..."
  tmp_libs="$kafka_libs.tmp.$$"
  rm -rf "$tmp_libs"
  trap 'rm -rf "$tmp_libs"' EXIT
  # Maven keeps its downloads in ~/.m2, so a re-fetch after a pom edit is fast. Its output
  # (colour codes even in batch mode) is shown only when it fails.
  mvn_log="$(mktemp)"
  if ! mvn -q -B -f "$here/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp_libs" >"$mvn_log" 2>&1; then
    cat "$mvn_log" >&2
    rm -f "$mvn_log"
    die "Maven could not fetch the Kafka jars (see above); check network access to Maven Central"
  fi
  rm -f "$mvn_log"
  ls "$tmp_libs"/kafka_2.13-"$kafka_version".jar >/dev/null 2>&1 \
    || die "kafka_2.13-$kafka_version.jar missing after the Maven fetch"
  rm -rf "$kafka_libs"
  mkdir -p "$(dirname "$kafka_libs")"
  mv "$tmp_libs" "$kafka_libs"
  trap - EXIT
  echo "$pom_sum" >"$kafka_stamp"
  say "Kafka $kafka_version: fetched $(ls "$kafka_libs"/*.jar | wc -l) jars in $(elapsed "$step_at") s"
else
  say "Kafka $kafka_version: jars already in $kafka_libs"
fi

# --------------------------------------------------------------------------- FerretDB
step_at=$(date +%s.%N)
if ((need_go)); then
  say "building FerretDB $ferretdb_version (Go module proxy) into $ferretdb_bin ... (a few minutes the first time)"
  mkdir -p "$(dirname "$ferretdb_bin")"
  # The pinned FerretDB module (go.mod/go.sum, -mod=readonly) is downloaded into Go's module cache,
  # copied, patched, and built through a `replace` in a scratch copy of the tiny main module.
  module_dir="$(cd "$here/ferretdb" && GOFLAGS=-mod=readonly go mod download -json github.com/FerretDB/FerretDB \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" \
    || die "could not download the FerretDB module (see above); check access to the Go module proxy"
  [[ -d "$module_dir" ]] || die "go mod download gave no source folder for FerretDB $ferretdb_version"
  build_dir="$(mktemp -d)"
  trap 'rm -rf "$build_dir"' EXIT
  cp -r "$module_dir" "$build_dir/FerretDB"
  chmod -R u+w "$build_dir/FerretDB"
  for patch_file in "${patch_files[@]}"; do
    patch -s -p1 -d "$build_dir/FerretDB" <"$patch_file" \
      || die "$(basename "$patch_file") does not apply to FerretDB $ferretdb_version"
    say "applied $(basename "$patch_file")"
  done
  cp "$here"/ferretdb/go.mod "$here"/ferretdb/go.sum "$here"/ferretdb/main.go "$build_dir/"
  # nice: other work shares the CPUs.
  (cd "$build_dir" \
    && go mod edit -replace=github.com/FerretDB/FerretDB=./FerretDB \
    && GOFLAGS=-mod=readonly nice -n 10 go build -trimpath -ldflags='-s -w' -o "$ferretdb_bin.tmp" .) \
    || die "go build of FerretDB failed (see above); check access to the Go module proxy"
  rm -rf "$build_dir"
  trap - EXIT
  "$ferretdb_bin.tmp" --version >/dev/null || die "the built FerretDB binary does not run"
  mv "$ferretdb_bin.tmp" "$ferretdb_bin"
  say "FerretDB $ferretdb_version: built in $(elapsed "$step_at") s"
else
  say "FerretDB $ferretdb_version: already built at $ferretdb_bin"
fi

say "local stack artefacts ready in $(elapsed "$started_at") s (cache: $cache_dir)"
