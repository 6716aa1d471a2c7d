package cli

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/flowlens/flowlens/policy"
)

type matrixCmd struct {
	inputs
	port       string
	by         string
	namespaces []string
	output     string
}

func newMatrix(stdout io.Writer) *cobra.Command {
	c := &matrixCmd{}
	cmd := &cobra.Command{
		Use:   "matrix --cluster FILE|DIR --policies FILE|DIR --port PORT[/PROTO] [--by namespace|pod]",
		Short: "Print the connectivity matrix for a port",
		Long: "Print who may connect to whom on a port. Rows are sources, columns destinations.\n" +
			"By pod: Y allowed, . denied. By namespace: Y every pod pair allowed, ~ some,\n" +
			". none, blank when there is no pair (one pod, to itself).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.run(stdout) },
	}
	c.register(cmd)
	cmd.Flags().StringVar(&c.port, "port", "", "destination port and protocol: 80/TCP, 53/UDP or ICMP")
	cmd.Flags().StringVar(&c.by, "by", "namespace", "namespace or pod")
	cmd.Flags().StringSliceVar(&c.namespaces, "namespace", nil, "only pods of these namespaces (repeatable)")
	cmd.Flags().StringVarP(&c.output, "output", "o", "text", "text, or html: one self-contained page drawing the matrix as flowlens ui does")
	_ = cmd.MarkFlagRequired("port")
	return cmd
}

func (c *matrixCmd) run(stdout io.Writer) error {
	if c.by != "namespace" && c.by != "pod" {
		return fmt.Errorf("--by %q: want namespace or pod", c.by)
	}
	if !slices.Contains(matrixOutputs, c.output) {
		return fmt.Errorf("--output %q: want %s", c.output, strings.Join(matrixOutputs, " or "))
	}
	port, proto, err := parsePort(c.port)
	if err != nil {
		return err
	}
	e, err := c.engine()
	if err != nil {
		return err
	}
	var pods []string
	for _, p := range e.Pods() {
		ns, _, _ := strings.Cut(p, "/")
		if len(c.namespaces) == 0 || slices.Contains(c.namespaces, ns) {
			pods = append(pods, p)
		}
	}
	if len(pods) == 0 {
		return fmt.Errorf("no pods with an IP in the cluster state (after --namespace)")
	}
	if c.output == "html" {
		return writeMatrixHTML(stdout, e, pods, port, proto)
	}
	m := computeMatrix(e, pods, port, proto)
	var out bytes.Buffer
	defer func() {
		// tabwriter pads the last cell; drop the trailing blanks.
		for line := range strings.Lines(out.String()) {
			fmt.Fprintln(stdout, strings.TrimRight(line, " \n"))
		}
	}()
	tw := tabwriter.NewWriter(&out, 0, 0, 1, ' ', 0)
	fmt.Fprintf(tw, "%s, rows: from, columns: to\n", policy.AppendPort(nil, port, proto))
	if c.by == "pod" {
		writeTable(tw, pods, func(i, j int) string {
			if m[i][j] {
				return "Y"
			}
			return "."
		})
		return tw.Flush()
	}
	var nss []string
	nsOf := make([]int, len(pods))
	for i, p := range pods {
		ns, _, _ := strings.Cut(p, "/")
		if len(nss) == 0 || nss[len(nss)-1] != ns {
			nss = append(nss, ns)
		}
		nsOf[i] = len(nss) - 1
	}
	allowed := make([][]int, len(nss))
	total := make([][]int, len(nss))
	for i := range nss {
		allowed[i], total[i] = make([]int, len(nss)), make([]int, len(nss))
	}
	for i := range pods {
		for j := range pods {
			if i == j {
				continue // a pod to itself says nothing about its namespace
			}
			total[nsOf[i]][nsOf[j]]++
			if m[i][j] {
				allowed[nsOf[i]][nsOf[j]]++
			}
		}
	}
	writeTable(tw, nss, func(i, j int) string {
		switch a, t := allowed[i][j], total[i][j]; {
		case t == 0:
			return ""
		case a == t:
			return "Y"
		case a == 0:
			return "."
		default:
			return "~"
		}
	})
	return tw.Flush()
}

// writeTable prints numbered rows and columns: names are too long to head
// columns.
func writeTable(w io.Writer, names []string, cell func(i, j int) string) {
	fmt.Fprint(w, "\t")
	for j := range names {
		fmt.Fprintf(w, "\t%d", j)
	}
	fmt.Fprintln(w, "\t")
	for i, n := range names {
		fmt.Fprintf(w, "%d\t%s", i, n)
		for j := range names {
			fmt.Fprintf(w, "\t%s", cell(i, j))
		}
		fmt.Fprintln(w, "\t")
	}
}

// computeMatrix evaluates every ordered pair of pods.
func computeMatrix(e *policy.Engine, pods []string, port uint16, proto corev1.Protocol) [][]bool {
	addrs := make([]policy.Query, len(pods))
	for i, p := range pods {
		addrs[i].Src, _ = e.PodAddr(p)
	}
	m := make([][]bool, len(pods))
	for i := range pods {
		m[i] = make([]bool, len(pods))
		for j := range pods {
			m[i][j] = e.Evaluate(policy.Query{Src: addrs[i].Src, Dst: addrs[j].Src, Port: port, Protocol: proto}).Predicted()
		}
	}
	return m
}
