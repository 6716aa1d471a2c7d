package bpf

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// udpFrame returns an Ethernet/IPv4/UDP frame from 10.42.0.10:40000 to
// 10.42.0.11:53 with a payload of n bytes.
func udpFrame(n int) []byte {
	f := make([]byte, 14+20+8+n)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+n))
	ip[8] = 64
	ip[9] = unix.IPPROTO_UDP
	copy(ip[12:], []byte{10, 42, 0, 10})
	copy(ip[16:], []byte{10, 42, 0, 11})
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], 53)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+n))
	return f
}

// BenchmarkProgram reports the in-kernel cost of the veth programs per
// packet (BPF_PROG_TEST_RUN), for a flow that already has an entry. The
// frames carry no ingress interface, so tc_to_pod's skip by ifindex does
// not apply.
func BenchmarkProgram(b *testing.B) {
	requireRoot(b)
	var objs flowlensObjects
	if err := loadFlowlensObjects(&objs, nil); err != nil {
		b.Fatal(err)
	}
	defer objs.Close()
	frame := udpFrame(18)
	// From another node's pod (10.42.1.10): counted on delivery.
	remote := udpFrame(18)
	remote[14+14] = 1
	for _, tc := range []struct {
		name  string
		prog  *ebpf.Program
		frame []byte
	}{
		{"tc_from_pod", objs.TcFromPod, frame},
		{"tc_to_pod", objs.TcToPod, frame}, // from a local pod: skipped after parsing
		{"tc_to_pod_remote", objs.TcToPod, remote},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const repeat = 100000
			var total time.Duration
			for b.Loop() {
				ret, d, err := tc.prog.Benchmark(tc.frame, repeat, nil)
				if err != nil {
					b.Fatal(err)
				}
				if int32(ret) != -1 {
					b.Fatalf("verdict %d, want TC_ACT_UNSPEC", int32(ret))
				}
				total += d
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/packet")
		})
	}
}
