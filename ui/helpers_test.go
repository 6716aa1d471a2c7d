package ui

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowlens/flowlens/agent/observer"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

var base = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// pod is a pod endpoint of workload w in namespace ns.
func pod(ns, name, w string) *flowlensv1.Endpoint {
	return &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_POD, Namespace: ns, PodName: name,
		Workloads: []*flowlensv1.Workload{{Kind: "Deployment", Name: w}}}
}

// tcpFlow is the n-th test flow: from -> to on dport, stamped base+n ms.
func tcpFlow(n int, from, to *flowlensv1.Endpoint, dport uint32, v flowlensv1.Verdict) *flowlensv1.Flow {
	fl := &flowlensv1.Flow{
		Time: timestamppb.New(base.Add(time.Duration(n) * time.Millisecond)), NodeName: "node-a", Verdict: v,
		Ip:     &flowlensv1.IP{Source: "10.42.0.10", Destination: "10.42.0.20"},
		L4:     &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Tcp{Tcp: &flowlensv1.TCP{SourcePort: uint32(40000 + n), DestinationPort: dport}}},
		Source: from, Destination: to, Counters: &flowlensv1.Counters{Packets: 2, Bytes: 100},
	}
	if v == flowlensv1.Verdict_DROPPED {
		fl.DropReason = "NETFILTER_DROP"
		fl.Policy = &flowlensv1.PolicyVerdict{Verdict: flowlensv1.IntendedVerdict_DENY, Mismatch: flowlensv1.Mismatch_NONE,
			Summary: "denied: demo/db isolated for ingress by demo/default-deny-ingress, no rule allows",
			Ingress: &flowlensv1.PolicySide{Applicable: true, Isolated: true,
				IsolatedBy: []*flowlensv1.PolicyRef{{Namespace: "demo", Name: "default-deny-ingress", Rule: -1}}}}
	}
	return fl
}

func flowResp(fl *flowlensv1.Flow) *flowlensv1.GetFlowsResponse {
	return &flowlensv1.GetFlowsResponse{ResponseTypes: &flowlensv1.GetFlowsResponse_Flow{Flow: fl}, NodeName: fl.GetNodeName(), Time: fl.GetTime()}
}

// fakeStatus is the agent's self-description for ServerStatus.
type fakeStatus struct{}

func (fakeStatus) Status() *flowlensv1.ServerStatusResponse {
	return &flowlensv1.ServerStatusResponse{Version: "test", Kernel: "6.18", AttachedInterfaces: 3,
		LostEvents: []*flowlensv1.LostEvents{{Source: flowlensv1.LostEventSource_KERNEL_RING_BUFFER, NumEventsLost: 7}}}
}

// startAgent serves an in-process Observer over ring and returns a client
// connection to it.
func startAgent(t *testing.T, ring *observer.Ring) *grpc.ClientConn {
	t.Helper()
	srv := observer.NewServer(ring, fakeStatus{}, "node-a", nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- observer.ServeListener(ctx, lis, observer.ServeConfig{}, srv, nil) }()
	t.Cleanup(func() {
		cancel()
		<-errc
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}
