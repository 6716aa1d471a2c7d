#!/usr/bin/env bash
# Regenerates the bpf2go objects and the protobuf/gRPC code and fails when the
# result differs from what is committed: generated code is checked in so that
# `go build` needs no clang or buf, and this keeps it honest.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=${GOFLAGS:--mod=mod}
command -v clang >/dev/null || { echo "check-generated: clang missing (make deps)"; exit 1; }
go generate ./bpf/... ./proto/...
if ! git diff --quiet -- bpf proto || [ -n "$(git ls-files --others --exclude-standard -- bpf proto)" ]; then
	echo "check-generated: generated code is stale; run 'make generate' and commit:"
	git status --short -- bpf proto
	git diff --stat -- bpf proto
	exit 1
fi
echo "check-generated: bpf and proto are current"
