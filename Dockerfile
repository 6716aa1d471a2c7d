# Multi-stage image: the eBPF objects are committed (bpf2go), so the build
# needs neither clang nor root; the runtime image holds only the binaries.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS=linux TARGETARCH VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
    -ldflags "-s -w -X github.com/flowlens/flowlens/internal/version.Version=$VERSION" -o /out/ ./cmd/flowlens-agent ./cmd/flowlens

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /
USER 0:0
ENTRYPOINT ["/flowlens-agent"]
