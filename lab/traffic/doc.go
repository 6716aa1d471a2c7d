// Package traffic drives the lab's traffic. Scenario traffic: Servers answer
// on every port the scenario's pods (and the outside world) listen on, and
// RunCase, RunExternalCase and RunScenario try the scenario's cases against them,
// through the Lab interface (*lab.Lab), so this package does not import lab.
//
// The datapath benchmark harness: iperf3 between two pods, without and with
// what is being priced attached, interleaved round by round so a noisy shared machine affects
// both sides alike. The aggregate benchmark (the capture alone) and the e2e one (the whole agent) both
// run it on a netns.Bridge; it imports neither bpf nor the agent, so their tests can use it.
package traffic
