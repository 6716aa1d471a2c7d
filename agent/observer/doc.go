// Package observer serves the flows one agent has seen over the Observer gRPC
// API: a recent-flow ring written by the pipeline, read by any number of
// clients, each at its own pace, and the gRPC server around it (with
// grpc.health.v1 and server reflection so grpcurl works).
package observer
