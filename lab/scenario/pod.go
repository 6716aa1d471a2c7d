package scenario

import "github.com/flowlens/flowlens/lab/netns"

// Pod is a scenario pod placed in a lab: its namespace and links, and the spec it was built from
// (with the address it was given).
type Pod struct {
	*netns.Pod
	Spec PodSpec `json:"spec"`
}
