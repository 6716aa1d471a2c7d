package observer

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// BenchmarkGRPCFollowers measures flows/second from Ring.Write through the
// gRPC server to 1 and 10 following clients over loopback TCP: how fast the
// writer goes (written/s, never held back by clients), how many flows per
// second each client actually receives, and the share the clients lost
// because they could not keep up with an unthrottled writer.
func BenchmarkGRPCFollowers(b *testing.B) {
	for _, followers := range []int{1, 10} {
		b.Run(fmt.Sprintf("followers=%d", followers), func(b *testing.B) {
			ring := NewRing(0)
			srv := NewServer(ring, nil, "bench", nil)
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- ServeListener(ctx, lis, ServeConfig{}, srv, nil) }()
			conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			client := flowlensv1.NewObserverClient(conn)

			ring.Write(flowN(0, "web", flowlensv1.Verdict_FORWARDED)) // marker: every stream is live once it has it
			var got, lost atomic.Uint64
			var wg sync.WaitGroup
			for range followers {
				st, err := client.GetFlows(ctx, &flowlensv1.GetFlowsRequest{Number: 1, Follow: true})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := st.Recv(); err != nil {
					b.Fatal(err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						resp, err := st.Recv()
						if err != nil {
							return
						}
						if le := resp.GetLostEvents(); le != nil {
							lost.Add(le.GetNumEventsLost())
						} else {
							got.Add(1)
						}
					}
				}()
			}
			ev := flowN(1, "web", flowlensv1.Verdict_FORWARDED)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				ring.Write(ev)
			}
			writeElapsed := time.Since(start)
			want := uint64(b.N) * uint64(followers)
			deadline := time.Now().Add(time.Minute)
			for got.Load()+lost.Load() < want && time.Now().Before(deadline) {
				time.Sleep(100 * time.Microsecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/writeElapsed.Seconds(), "written/s")
			b.ReportMetric(float64(got.Load())/float64(followers)/elapsed.Seconds(), "delivered/s/client")
			b.ReportMetric(100*float64(lost.Load())/float64(want), "%lost")
			cancel()
			if err := <-served; err != nil {
				b.Fatal(err)
			}
			wg.Wait()
			conn.Close()
		})
	}
}
