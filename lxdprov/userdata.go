package lxdprov

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"text/template"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Paths inside a runner instance. The image has the runner unpacked at
// RunnerDir and a user "runner" (whose group is "runner") to run it.
const (
	RunnerDir      = "/opt/actions-runner"
	PreJobHookPath = "/opt/ephemera/pre-job.sh"
	PreJobEnvPath  = "/etc/ephemera/pre-job.env"
	RunOncePath    = "/opt/ephemera/run-once.sh"
)

//go:embed userdata.yaml.tmpl
var userDataTemplate string

var userDataTmpl = template.Must(template.New("user-data").
	Funcs(template.FuncMap{"quote": quote}).
	Parse(userDataTemplate))

// userData is what the template renders.
type userData struct {
	PreJobHook string // the hook script
	PolicyEnv  string // pre-job.env's content
	RunCommand string // runcmd's entry that starts the runner
}

// renderUserData renders an instance's cloud-config: ephemera's own, from
// the embedded template, with the pool's snippet (already parsed, may be
// nil) merged after it. The values must have passed checkSpec and
// checkPolicyURL; quoting keeps the YAML intact whatever they hold.
func renderUserData(hook, policyURL, token, jit string, snippet *yaml.Node) (string, error) {
	var buf bytes.Buffer
	err := userDataTmpl.Execute(&buf, userData{
		PreJobHook: hook,
		PolicyEnv:  "EPHEMERA_POLICY_URL=" + policyURL + "\nEPHEMERA_POLICY_TOKEN=" + token + "\n",
		RunCommand: RunOncePath + " " + RunnerDir + "/run.sh --jitconfig " + jit,
	})
	if err != nil {
		return "", fmt.Errorf("render user-data: %w", err)
	}
	if snippet == nil {
		return buf.String(), nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(buf.Bytes(), &doc); err != nil {
		return "", fmt.Errorf("render user-data: ephemera's template is not YAML: %w", err)
	}
	if err := mergeCloudConfig(doc.Content[0], snippet); err != nil {
		return "", err
	}
	// The template's first comment, kept by the encoder, is the header.
	return encodeYAML(&doc)
}

// quote renders s as a YAML double-quoted scalar that YAML 1.1 and 1.2
// parsers (cloud-init's PyYAML, LXD's go-yaml) read back as exactly s:
// quotes, backslashes, line breaks and every character YAML does not print
// are escaped, so no value can end the scalar or start a new line.
func quote(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", errors.New("render user-data: a value is not valid UTF-8")
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case yamlPrintable(r):
			b.WriteRune(r)
		case r <= 0xff:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteByte('"')
	return b.String(), nil
}

// yamlPrintable reports whether r may appear as itself inside a quoted
// scalar: YAML's printable set without the characters YAML 1.1 reads as
// line breaks (U+0085, U+2028, U+2029) and without the byte order mark.
func yamlPrintable(r rune) bool {
	switch {
	case r >= 0x20 && r <= 0x7e:
		return true
	case r == 0x2028 || r == 0x2029 || r == 0xfeff:
		return false
	case r >= 0xa0 && r <= 0xd7ff, r >= 0xe000 && r <= 0xfffd, r >= 0x10000 && r <= 0x10ffff:
		return true
	}
	return false
}

func encodeYAML(n *yaml.Node) (string, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return "", fmt.Errorf("render user-data: %w", err)
	}
	if err := enc.Close(); err != nil {
		return "", fmt.Errorf("render user-data: %w", err)
	}
	return buf.String(), nil
}
