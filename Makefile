# flowlens — `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
export GOFLAGS ?= -mod=mod
BIN := bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/flowlens/flowlens/internal/version.Version=$(VERSION)
# Debian packages the build, the lab and the tests need: command -> package.
DEB_CMDS := clang:clang llc:llvm bpftool:bpftool ip:iproute2 iptables:iptables ipset:ipset \
	iperf3:iperf3 nc:netcat-openbsd tcpdump:tcpdump promtool:prometheus gcc:gcc \
	chromium:chromium ping:iputils-ping jq:jq curl:curl
DEB_FILES := /usr/include/bpf/bpf_helpers.h:libbpf-dev
# Only the real-cluster lab and `make image` need these.
DEB_CMDS_KUBE := containerd:containerd runc:runc podman:podman buildah:buildah nsenter:util-linux
DEB_FILES_KUBE := /usr/lib/cni/bridge:containernetworking-plugins

.DEFAULT_GOAL := help

##@ General
.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-16s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Setup
.PHONY: deps
deps: ## Install the Debian packages and kernel mounts flowlens needs (root), or name what is missing.
	@command -v $(GO) >/dev/null || { echo "deps: Go is not installed (need Go >= 1.26 on PATH)"; exit 1; }
	@missing=""; \
	for pair in $(DEB_CMDS); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
		command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || missing="$$missing $$pkg"; done; \
	for pair in $(DEB_FILES); do f=$${pair%%:*}; pkg=$${pair##*:}; [ -e $$f ] || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "deps: installing$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || { echo "deps: apt-get install$$missing failed"; exit 1; }; \
		else echo "deps: missing Debian packages:$$missing (run as root: apt-get install$$missing)"; exit 1; fi; \
	fi
	@if [ "$$(id -u)" = 0 ]; then \
		mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf || { echo "deps: cannot mount bpffs on /sys/fs/bpf"; exit 1; }; \
		mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing || { echo "deps: cannot mount tracefs on /sys/kernel/tracing"; exit 1; }; \
	fi
	@[ -r /sys/kernel/btf/vmlinux ] || { echo "deps: the kernel has no BTF (/sys/kernel/btf/vmlinux); flowlens needs CONFIG_DEBUG_INFO_BTF=y"; exit 1; }

.PHONY: deps-kubernetes
deps-kubernetes: ## deps, plus containerd, runc, podman, buildah and the CNI plugins for the real-cluster lab and make image.
	@$(MAKE) --no-print-directory deps DEB_CMDS="$(DEB_CMDS) $(DEB_CMDS_KUBE)" DEB_FILES="$(DEB_FILES) $(DEB_FILES_KUBE)"

##@ Build
.PHONY: generate
generate: ## Regenerate the eBPF objects (bpf2go) and the gRPC/protobuf code (buf).
	$(GO) generate ./bpf/... ./proto/...

.PHONY: build
build: ## Build flowlens, flowlens-agent and flowlens-lab into bin/.
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

IMAGE ?= ghcr.io/flowlens/flowlens:$(VERSION)
IMAGE_ARCHIVE ?= $(BIN)/flowlens-image.tar
.PHONY: image
image: deps-kubernetes ## Build the agent image with podman, no Docker daemon (deploy/image/Containerfile.scratch), as an OCI archive in bin/.
	@command -v podman >/dev/null || { echo "image: podman is not installed (make deps-kubernetes)"; exit 1; }
	@mkdir -p $(BIN)/image
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/image/ ./cmd/flowlens-agent ./cmd/flowlens
	podman build --quiet -f deploy/image/Containerfile.scratch -t $(IMAGE) $(BIN)/image
	rm -f $(IMAGE_ARCHIVE) && podman save --format oci-archive -o $(IMAGE_ARCHIVE) $(IMAGE)
	@echo "image $(IMAGE) in $(IMAGE_ARCHIVE) (load it: ctr -n k8s.io images import $(IMAGE_ARCHIVE))"

.PHONY: lint
lint: ## go vet, gofmt, buf lint, and a check that generated code is current.
	$(GO) vet ./...
	$(GO) vet -tags kubelab ./e2e/ ./lab/...
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '/headers/')); [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	$(MAKE) check-generated
	@# Every skip goes through internal/testenv, so FLOWLENS_REQUIRE_PRIVILEGED=1 (CI) can turn it into a failure.
	@out=$$(git grep -nE '\b(t|b|tb)\.Skip(f|Now)?\(' -- '*_test.go' ':!internal/testenv/' ':!lab/kuberouter/' || true); \
		[ -z "$$out" ] || { echo "skip outside internal/testenv (use testenv.Skip/Root/Tool):"; echo "$$out"; exit 1; }

.PHONY: check-generated
check-generated: ## Fail when committed generated code differs from what the sources produce.
	./hack/check-generated.sh

##@ Run
.PHONY: demo
demo: deps build ## Build the lab (two K3s-like nodes in netns), run the agents and show the drift story; DEMO_CLUSTER=kubernetes: on the real-cluster lab.
	./hack/demo.sh

##@ Test
.PHONY: test
test: deps lint ## All tests: lint, unit, privileged (as root: real BPF, netns, iptables, a real Kubernetes cluster) and alert rules, with the race detector.
	$(GO) test -race -count=1 -timeout 20m $$($(GO) list ./... | grep -v '/e2e$$')
	@# e2e on its own: it diffs the kernel's BPF links and tc filters system-wide,
	@# which the other packages' privileged tests would change under it.
	$(GO) test -race -count=1 -timeout 20m ./e2e/
	cd lab/kuberouter && $(GO) vet ./... && $(GO) test -count=1 ./...
	promtool test rules deploy/prometheus/tests/*.yaml
	@# The real-cluster ring last and on its own, for the same reason as e2e. Not root: its tests
	@# skip with a message (FLOWLENS_REQUIRE_PRIVILEGED=1 fails them), so nothing to install.
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory deps-kubernetes; fi
	$(KUBE_RING) -skip '^TestKubeDemoDriftScenario$$'

# The real-cluster ring: the first run builds the Kubernetes binaries (~34 CPU-minutes), later runs
# take them from /var/cache/flowlens-lab/kubernetes. One package at a time: each brings clusters up
# on the same two cores. make test leaves out the kube demo's test (3-8 minutes, the demo's story
# again) to keep a cold run near 45 minutes; make test-kubernetes runs it.
KUBE_RING = $(GO) test -race -tags kubelab -count=1 -p 1 -timeout 60m ./lab/kube/ ./e2e/ -run '^TestKube|LeavesNothing$$'
.PHONY: test-kubernetes
test-kubernetes: deps-kubernetes ## The real-cluster ring alone (build tag kubelab; in make test too): etcd, apiserver, kubelet, containerd, the agent as its DaemonSet.
	$(KUBE_RING)

.PHONY: test-unit
test-unit: ## The quick ring: unit tests only (-short skips every privileged test, even as root).
	$(GO) test -count=1 -short ./...

.PHONY: bench
bench: deps ## Benchmarks that print figures: decoder, enrichment, policy engine, filters, ring, and iperf3 through the lab with/without the agent.
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 1s -timeout 30m ./...
