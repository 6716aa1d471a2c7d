package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"

	"github.com/flowlens/flowlens/policy"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
	"github.com/flowlens/flowlens/ui"
)

// matrixOutputs are the formats of `policy matrix -o`.
var matrixOutputs = []string{"text", "html"}

// writeMatrixHTML writes the matrix as `flowlens ui` draws live flows: one
// self-contained HTML file (a CI artifact) where every ordered pair of pods
// is a flow, green when the policies allow it and red when they deny it,
// each with its explanation.
func writeMatrixHTML(w io.Writer, e *policy.Engine, pods []string, port uint16, proto corev1.Protocol) error {
	now := timestamppb.New(time.Now())
	addrs := make([]string, len(pods))
	for i, p := range pods {
		a, _ := e.PodAddr(p)
		addrs[i] = a.String()
	}
	var flows []*flowlensv1.Flow
	for i, src := range pods {
		for j, dst := range pods {
			if i == j {
				continue // a pod to itself says nothing about policy
			}
			sa, _ := e.PodAddr(src)
			da, _ := e.PodAddr(dst)
			v := e.Evaluate(policy.Query{Src: sa, Dst: da, Port: port, Protocol: proto})
			fl := &flowlensv1.Flow{
				Time: now, Verdict: flowlensv1.Verdict_DROPPED,
				Ip:     &flowlensv1.IP{Source: addrs[i], Destination: addrs[j]},
				L4:     layer4(port, proto),
				Source: podEndpoint(src), Destination: podEndpoint(dst),
				Policy: v.Proto(),
			}
			if v.Allowed {
				fl.Verdict = flowlensv1.Verdict_FORWARDED
			}
			flows = append(flows, fl)
		}
	}
	p := string(policy.AppendPort(nil, port, proto))
	return ui.WriteMatrix(w, "flowlens policy matrix "+p,
		fmt.Sprintf("intended verdicts on %s for %d pods (%d pairs), computed offline from manifests", p, len(pods), len(flows)), flows)
}

func podEndpoint(key string) *flowlensv1.Endpoint {
	ns, name, _ := strings.Cut(key, "/")
	return &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_POD, Namespace: ns, PodName: name}
}

func layer4(port uint16, proto corev1.Protocol) *flowlensv1.Layer4 {
	p := uint32(port)
	switch proto {
	case corev1.ProtocolUDP:
		return &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Udp{Udp: &flowlensv1.UDP{DestinationPort: p}}}
	case corev1.ProtocolSCTP:
		return &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Sctp{Sctp: &flowlensv1.SCTP{DestinationPort: p}}}
	case policy.ProtocolICMP:
		return &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Icmpv4{Icmpv4: &flowlensv1.ICMPv4{}}}
	}
	return &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Tcp{Tcp: &flowlensv1.TCP{DestinationPort: p}}}
}
