// Package outside owns the world outside the cluster: one more namespace, <prefix>-ext (see
// netns.ExtNetNS), joined to every node by a veth pair of its own (ext0 in the node, nodeN in
// ext). It holds the outside peers' addresses on lo; the lab's traffic serves their ports. ext0 is not
// a bridge port, so the agent never attaches to it, as it never attaches to a real node's uplink.
//
// Pod traffic leaving the cluster is masqueraded to ext0's address by the FLANNEL-POSTRTG rules
// the lab already writes (-s 10.42.0.0/16 ! -d 224.0.0.0/4 MASQUERADE), as on K3s, so replies come
// back to the node; kube-router judges the packet in FORWARD, before POSTROUTING, so it still sees
// the pod address. ext also routes each node's pod /24 back over that node's veth, which only the
// inbound cases (a LAN user dialling a pod address) use: on a real LAN that path is a static route
// or a LoadBalancer, and the source address stays the client's either way.
package outside
