package traffic

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// Endpoint is one end of a measurement: a namespace and the address iperf3 uses in it.
type Endpoint struct {
	NetNS string
	IP    netip.Addr
	// CPUs, when set, pins iperf3 at this end to these CPUs (a taskset(1) list,
	// e.g. "1"). On a machine of a few CPUs, which CPUs the two ends and the veth
	// path's softirqs land on decides the rate more than the datapath does; pinned,
	// a measurement repeats.
	CPUs string
}

// command is argv for running iperf3 with args in e's namespace, pinned to
// e.CPUs if set.
func (e Endpoint) command(args ...string) []string {
	cmd := []string{"netns", "exec", e.NetNS}
	if e.CPUs != "" {
		cmd = append(cmd, "taskset", "-c", e.CPUs)
	}
	return append(append(cmd, "iperf3"), args...)
}

// Run is one iperf3 measurement.
type Run struct {
	Rate    float64 // TCP bits/s or UDP received packets/s
	Packets float64 // packets the client sent (UDP) or an estimate from bytes (TCP, 1448-byte segments)
	// CPU is the CPU seconds the client and the server used, the kernel's work in their
	// context included (the veth path, its BPF programs, softirqs the kernel ran on their
	// behalf): per unit of traffic it is a cost that other load on the machine changes far
	// less than it changes the rate.
	CPU float64
}

// cpuSeconds is what a waited-for process used, user and system.
func cpuSeconds(ps *os.ProcessState) float64 {
	if ps == nil {
		return 0
	}
	return (ps.UserTime() + ps.SystemTime()).Seconds()
}

type iperfJSON struct {
	Error string `json:"error"`
	End   struct {
		Sum struct {
			Packets     float64 `json:"packets"`
			LostPackets float64 `json:"lost_packets"`
			Seconds     float64 `json:"seconds"`
		} `json:"sum"`
		SumSent struct {
			Bytes float64 `json:"bytes"`
		} `json:"sum_sent"`
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
}

// Iperf runs one iperf3 measurement of seconds from from to to: TCP, or 64-byte UDP at full
// rate.
func Iperf(ctx context.Context, from, to Endpoint, udp bool, seconds int) (Run, error) {
	srv := exec.CommandContext(ctx, "ip", to.command("-s", "-1", "-p", "5201", "-B", to.IP.String())...)
	if err := srv.Start(); err != nil {
		return Run{}, fmt.Errorf("start iperf3 server: %w", err)
	}
	var cpu float64
	stopServer := func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
		cpu += cpuSeconds(srv.ProcessState)
	}
	defer func() {
		if srv.ProcessState == nil {
			stopServer()
		}
	}()
	args := from.command("-c", to.IP.String(), "-p", "5201", "-t", strconv.Itoa(seconds), "-J")
	if udp {
		args = append(args, "-u", "-l", "64", "-b", "0")
	}
	var r iperfJSON
	// The server needs a moment to listen; iperf3 reports that (and any other failure) in its
	// JSON, not always in its exit code.
	for try := 0; ; try++ {
		cl := exec.CommandContext(ctx, "ip", args...)
		out, err := cl.Output()
		cpu += cpuSeconds(cl.ProcessState)
		r.Error = ""
		if jerr := json.Unmarshal(out, &r); jerr != nil && err == nil {
			err = jerr
		}
		if err == nil && r.Error == "" {
			break
		}
		if try == 30 {
			return Run{}, fmt.Errorf("iperf3 client: %v %s: %s", err, r.Error, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The server ends after its one test (-1); its report may still be on its way out.
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			_ = srv.Process.Kill()
		}
	}()
	_ = srv.Wait()
	close(done)
	cpu += cpuSeconds(srv.ProcessState)
	if udp {
		return Run{Rate: (r.End.Sum.Packets - r.End.Sum.LostPackets) / r.End.Sum.Seconds, Packets: r.End.Sum.Packets, CPU: cpu}, nil
	}
	return Run{Rate: r.End.SumReceived.BitsPerSecond, Packets: r.End.SumSent.Bytes / 1448, CPU: cpu}, nil
}
