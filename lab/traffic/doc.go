// Package traffic owns the datapath benchmark harness: iperf3 between two pods, without and with
// what is being priced attached, interleaved round by round so a noisy shared machine affects
// both sides alike. The bpf benchmark (the capture alone) and the e2e one (the whole agent) both
// run it on a netns.Bridge; it imports neither bpf nor the agent, so bpf's tests can use it.
//
// The lab's scenario traffic (servers, cases, the outside world's) still lives in package lab.
package traffic
