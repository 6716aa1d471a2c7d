package e2e

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParsePerfScript(t *testing.T) {
	// Four samples as perf script -F ip,sym prints them: idle, a helper under
	// a subprogram under tc_from_pod, tc_to_pod itself, and the kernel alone.
	const script = `
	ffffffff8225f8ab pv_native_safe_halt
	ffffffff813d00d6 do_idle
	ffffffff813d0415 cpu_startup_entry

	ffffffff81234567 ktime_get_coarse_ts64
	ffffffffc0001234 bpf_prog_5edf7ca426db08e2_flush_pending
	ffffffffc0002345 bpf_prog_b79abb811c2b1b06_tc_from_pod
	ffffffff81e00000 tcx_run
	ffffffff81e00100 __netif_receive_skb_core.constprop.0

	ffffffffc0003456 bpf_prog_78188865dfe99612_tc_to_pod
	ffffffff81e00200 __dev_queue_xmit

	ffffffff81e00300 udp_sendmsg
	ffffffff81e00400 [unknown]
`
	p, err := parsePerfScript(strings.NewReader(script))
	require.NoError(t, err)
	assert.Equal(t, 4, p.samples)
	assert.Equal(t, 1, p.idle)
	assert.Equal(t, map[string]int{"tc_from_pod": 1, "tc_to_pod": 1}, p.progs)

	idle, progs := p.perPacket(10)
	assert.InDelta(t, 0.25, idle, 1e-9)
	assert.InDelta(t, profilePeriodNs/10.0, progs["tc_to_pod"], 1e-9)
	assert.InDelta(t, profilePeriodNs/10.0, progs["tc_from_pod"], 1e-9)
}

func TestBPFProgName(t *testing.T) {
	for _, tc := range []struct {
		sym, want string
		ok        bool
	}{
		{"bpf_prog_b79abb811c2b1b06_tc_from_pod", "tc_from_pod", true},
		{"bpf_prog_7c85c77581178cdb_bench_empty", "bench_empty", true},
		{"bpf_prog_b79abb811c2b1b06_", "", false},
		{"bpf_prog_load", "", false},
		{"bpf_prog_run_generic_xdp", "", false},
		{"__bpf_prog_enter_recur", "", false},
		{"tcx_run", "", false},
	} {
		got, ok := bpfProgName(tc.sym)
		assert.Equal(t, tc.ok, ok, tc.sym)
		assert.Equal(t, tc.want, got, tc.sym)
	}
}

func TestByProgram(t *testing.T) {
	got := byProgram([]map[string]float64{{"a": 1}, {"b": 2}, {"a": 3, "b": 4}})
	assert.Equal(t, map[string][]float64{"a": {1, 0, 3}, "b": {0, 2, 4}}, got)
}
