package docs

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/flowlens/flowlens/observe"
	"github.com/flowlens/flowlens/policy/cli"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	return string(b)
}

// commands returns the README's command lines that start with prefix,
// joining backslash continuations and dropping trailing comments.
func commands(doc, prefix string) []string {
	var out []string
	lines := strings.Split(doc, "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimPrefix(strings.TrimSpace(lines[i]), "$ ")
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		for strings.HasSuffix(l, `\`) && i+1 < len(lines) {
			i++
			l = strings.TrimSuffix(l, `\`) + " " + strings.TrimSpace(lines[i])
		}
		if c := strings.Index(l, " #"); c >= 0 {
			l = l[:c]
		}
		out = append(out, strings.TrimSpace(l))
	}
	return out
}

func args(t *testing.T, line, prefix string) []string {
	t.Helper()
	// The examples quote nothing; a quoted one would need a shell parser.
	require.NotContains(t, line, `'`, "quoted README example")
	require.NotContains(t, line, `"`, "quoted README example")
	return strings.Fields(strings.TrimPrefix(line, prefix))
}

// The `flowlens policy` examples run against examples/homelab; "..." stands
// for the homelab's files as in the README's first example.
func TestReadmePolicyCommands(t *testing.T) {
	cmds := commands(readme(t), "flowlens policy ")
	require.NotEmpty(t, cmds, "the README shows flowlens policy examples")
	repl := strings.NewReplacer(
		"--cluster ...", "--cluster examples/homelab/cluster.yaml",
		"--policies ...", "--policies examples/homelab/network-policies",
		"--queries queries.json", "--queries policy/cli/testdata/queries.json",
	)
	t.Chdir("..")
	for _, line := range cmds {
		t.Run(line, func(t *testing.T) {
			var out, errOut bytes.Buffer
			cmd := cli.NewCommand(&out, &errOut)
			cmd.SetArgs(args(t, repl.Replace(line), "flowlens policy "))
			require.NoError(t, cmd.Execute(), "%s\n%s", out.String(), errOut.String())
			assert.NotEmpty(t, out.String())
		})
	}
}

// The `flowlens observe` examples parse: --print-raw-filters prints the
// filters they send without connecting.
func TestReadmeObserveCommands(t *testing.T) {
	cmds := commands(readme(t), "flowlens observe")
	require.NotEmpty(t, cmds)
	for _, line := range cmds {
		t.Run(line, func(t *testing.T) {
			var out, errOut bytes.Buffer
			cmd := observe.NewObserveCommand(&out, &errOut)
			cmd.SetArgs(append(args(t, line, "flowlens observe"), "--print-raw-filters"))
			require.NoError(t, cmd.Execute(), "%s\n%s", out.String(), errOut.String())
		})
	}
}

// Every flowlens_* metric the README names is one the code registers.
func TestReadmeMetricNamesExist(t *testing.T) {
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`flowlens_[a-z_]+[a-z]`).FindAllString(readme(t), -1) {
		names[m] = true
	}
	require.NotEmpty(t, names)
	src, err := exec.Command("git", "-C", "..", "grep", "-h", "-o", `"flowlens_[a-z_]*"`, "--", "*.go", ":!*_test.go").Output()
	require.NoError(t, err)
	defined := string(src)
	for n := range names {
		switch {
		case strings.HasPrefix(n, "flowlens_e2e"), n == "flowlens_ref":
			continue // test and program names, not metrics
		}
		assert.Contains(t, defined, `"`+n+`"`, "README names %s, which no code defines", n)
	}
}

// The LogQL in the README uses fields of the flow log's JSON (proto names,
// nested fields flattened with _ as LogQL's json stage does).
func TestReadmeLogQLFieldsExist(t *testing.T) {
	doc := readme(t)
	var logql []string
	for _, block := range regexp.MustCompile("(?s)```logql\n(.*?)```").FindAllStringSubmatch(doc, -1) {
		logql = append(logql, block[1])
	}
	require.NotEmpty(t, logql, "the README has LogQL")
	fields := map[string]bool{}
	flatten("", (&flowlensv1.Flow{}).ProtoReflect().Descriptor(), fields, 0)
	text := regexp.MustCompile(`\{namespace="[^"]*"\}`).ReplaceAllString(strings.Join(logql, "\n"), "")
	used := map[string]bool{}
	for _, re := range []string{`\{\{\.(\w+)\}\}`, `by \((\w+)\)`, `(\w+)=~?"`} {
		for _, m := range regexp.MustCompile(re).FindAllStringSubmatch(text, -1) {
			used[m[1]] = true
		}
	}
	require.True(t, used["verdict"] && used["policy_mismatch"], "the LogQL parse found %v", used)
	for f := range used {
		assert.True(t, fields[f], "the README's LogQL uses %q, which the flow log does not write", f)
	}
}

func flatten(prefix string, md protoreflect.MessageDescriptor, out map[string]bool, depth int) {
	if depth > 4 {
		return
	}
	for i := 0; i < md.Fields().Len(); i++ {
		f := md.Fields().Get(i)
		name := prefix + string(f.Name())
		out[name] = true
		if f.Kind() == protoreflect.MessageKind && !f.IsMap() {
			flatten(name+"_", f.Message(), out, depth+1)
		}
	}
}

// The README's --print-raw-filters example shows what the command prints,
// proto field names included (as -o json and the flow log write them).
func TestReadmePrintRawFiltersOutput(t *testing.T) {
	m := regexp.MustCompile("(?s)```sh\n\\$ (flowlens observe [^\n]*--print-raw-filters)\n(.*?)```").FindStringSubmatch(readme(t))
	require.NotNil(t, m, "the README shows a --print-raw-filters example with its output")
	var out, errOut bytes.Buffer
	cmd := observe.NewObserveCommand(&out, &errOut)
	cmd.SetArgs(args(t, m[1], "flowlens observe"))
	require.NoError(t, cmd.Execute(), errOut.String())
	assert.Equal(t, m[2], out.String())
	fields := (&flowlensv1.FlowFilter{}).ProtoReflect().Descriptor().Fields()
	for _, key := range regexp.MustCompile(`"(\w+)":`).FindAllStringSubmatch(out.String(), -1) {
		assert.NotNil(t, fields.ByName(protoreflect.Name(key[1])), "%q is not a FlowFilter proto field name", key[1])
	}
}
