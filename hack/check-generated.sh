#!/usr/bin/env bash
# Fails when committed generated code differs from what the sources produce now: the bpf2go
# objects and bindings (bpf/flowlens_*_bpfel.{go,o}) and the protobuf/gRPC code (proto/).
# Generated code is checked in so that `go build` needs no clang or buf; this keeps it honest.
#
# Usage: hack/check-generated.sh [bpf] [proto]   (no argument: both)
# bpf regenerates into a temporary directory with the exact //go:generate line of bpf/gen.go, so
# the working tree is not touched (bpf's TestGeneratedUpToDate runs this part); proto regenerates
# in place and compares with git.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=${GOFLAGS:--mod=mod}

check_bpf() {
	command -v "${BPF2GO_CC:-clang}" >/dev/null || { echo "check-generated: clang missing (make deps)" >&2; exit 2; }
	local line status=0
	tmp=$(mktemp -d) # global: the EXIT trap runs after this function returns
	trap 'rm -rf "$tmp"' EXIT
	line=$(sed -n 's#^//go:generate go tool bpf2go ##p' bpf/gen.go)
	[ -n "$line" ] || { echo "check-generated: no bpf2go line in bpf/gen.go" >&2; exit 2; }
	# shellcheck disable=SC2086 # the generate line is split into words on purpose
	(cd bpf && GOPACKAGE=bpf GOFILE=gen.go go tool bpf2go -output-dir "$tmp" $line >/dev/null)
	for f in "$tmp"/*; do
		if ! cmp -s "$f" "bpf/$(basename "$f")"; then
			echo "check-generated: bpf/$(basename "$f") is out of date; run 'make generate' and commit" >&2
			status=1
		fi
	done
	return $status
}

check_proto() {
	go generate ./proto/...
	if ! git diff --quiet -- proto || [ -n "$(git ls-files --others --exclude-standard -- proto)" ]; then
		echo "check-generated: proto code is stale; run 'make generate' and commit:" >&2
		git status --short -- proto >&2
		return 1
	fi
}

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(bpf proto)
for part in "${parts[@]}"; do
	case $part in
	bpf) check_bpf ;;
	proto) check_proto ;;
	*) echo "check-generated: unknown part $part (want bpf or proto)" >&2; exit 2 ;;
	esac
done
echo "check-generated: ${parts[*]} current"
