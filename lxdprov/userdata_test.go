package lxdprov

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/scaler"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const (
	testHook  = "#!/bin/sh\n# stand-in pre-job hook\n. /etc/ephemera/pre-job.env\nexit 0\n"
	testURL   = "http://192.0.2.1:8081"
	testToken = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	testJIT   = "eyJydW5uZXIiOiJ0ZXN0In0+/ABCxyz09=="
)

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if diff := cmp.Diff(got, string(want)); diff != "" {
		t.Errorf("user-data differs from %s (-got +want):\n%s", path, diff)
	}
}

func TestUserDataMatchesGoldenFiles(t *testing.T) {
	for _, tc := range []struct {
		name    string
		golden  string
		snippet string
	}{
		{"ephemera's own cloud-config", "userdata.golden", ""},
		{"a pool snippet merged after it", "userdata-snippet.golden", `#cloud-config
packages: [jq]
write_files:
  - path: /etc/motd
    content: "pool motd\n"
runcmd:
  - echo before the runner
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snippet, err := parseSnippet(tc.snippet)
			if err != nil {
				t.Fatal(err)
			}
			got, err := renderUserData(testHook, testURL, testToken, testJIT, snippet)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.golden, got)
		})
	}
}

// hostile holds values that would break naive quoting: they could end a
// YAML scalar, start a key or a list item, or run shell commands.
var hostile = []string{
	`"; poweroff; echo "`,
	`'; poweroff; echo '`,
	"$(poweroff)",
	"`poweroff`",
	"line one\nruncmd: [poweroff]",
	"x\n- poweroff\n",
	"\n  - path: /etc/evil\n    content: evil",
	`back\slash \" \n`,
	"key: value # comment",
	"{flow: map} [flow, list] &anchor *alias !!binary",
	"carriage\rreturn, tab\t, nul\x00, del\x7f, nel\u0085, ls\u2028, ps\u2029, bom\ufeff, é, 🚀",
}

func TestHostileHookReachesTheInstanceUnchanged(t *testing.T) {
	for _, hook := range hostile {
		t.Run(fmt.Sprintf("%q", hook), func(t *testing.T) {
			for _, snippet := range []string{"", "packages: [jq]\nruncmd: [echo pool]"} {
				sn, err := parseSnippet(snippet)
				if err != nil {
					t.Fatal(err)
				}
				got, err := renderUserData(hook, testURL, testToken, testJIT, sn)
				if err != nil {
					t.Fatal(err)
				}
				cc := ParseCloudConfig(t, got)
				paths := []string{PreJobHookPath, PreJobEnvPath, RunnerDir + "/.env", RunOncePath}
				if diff := cmp.Diff(cc.paths(), paths); diff != "" {
					t.Errorf("write_files paths (-got +want):\n%s", diff)
				}
				if cc.WriteFiles[0].Content != hook {
					t.Errorf("hook = %q, want %q", cc.WriteFiles[0].Content, hook)
				}
				wantRun := RunOncePath + " " + RunnerDir + "/run.sh --jitconfig " + testJIT
				if len(cc.Runcmd) == 0 || cc.Runcmd[len(cc.Runcmd)-1] != wantRun {
					t.Errorf("runcmd = %q, want it to end with %q", cc.Runcmd, wantRun)
				}
			}
		})
	}
}

func TestQuoteRoundTripsEveryHostileValue(t *testing.T) {
	for _, s := range hostile {
		q, err := quote(s)
		if err != nil {
			t.Fatal(err)
		}
		if strings.ContainsAny(q, "\n\r\u0085\u2028\u2029") {
			t.Errorf("quote(%q) = %q spans lines", s, q)
		}
		var back string
		if err := yaml.Unmarshal([]byte("v: "+q), &struct{ V *string }{&back}); err != nil {
			t.Fatalf("quote(%q) = %s: not YAML: %v", s, q, err)
		}
		if back != s {
			t.Errorf("quote(%q) reads back as %q", s, back)
		}
	}
	if _, err := quote("bad \xff utf-8"); err == nil {
		t.Error("quote accepted invalid UTF-8")
	}
}

func TestPoolLabelsNeverReachTheInstance(t *testing.T) {
	pl := &pool{cfg: testPool()}
	pl.cfg.Labels = hostile
	spec := scaler.InstanceSpec{Name: "eph-small-1", Pool: pl.cfg.Name, JITConfig: testJIT, PolicyToken: testToken}
	ud, err := renderUserData(testHook, testURL, testToken, testJIT, nil)
	if err != nil {
		t.Fatal(err)
	}
	post := pl.post(spec, ud, time.Now())
	for k, v := range post.Config {
		for _, label := range hostile {
			if strings.Contains(v, label) {
				t.Errorf("config %s holds the label %q", k, label)
			}
		}
	}
}

func TestSnippetMerge(t *testing.T) {
	for _, tc := range []struct {
		name, snippet string
		wantErr       bool
		wantRuncmd    []string
		wantPaths     []string
		wantKey       string
	}{
		{name: "an empty snippet changes nothing", snippet: "#cloud-config\n",
			wantRuncmd: []string{"RUN"}, wantPaths: basePaths},
		{name: "a new key is added", snippet: "packages: [jq, curl]", wantKey: "packages",
			wantRuncmd: []string{"RUN"}, wantPaths: basePaths},
		{name: "runcmd entries run before the runner", snippet: "runcmd:\n  - echo one\n  - [echo, two]",
			wantRuncmd: []string{"echo one", "[echo two]", "RUN"}, wantPaths: basePaths},
		{name: "write_files entries come after ephemera's", snippet: "write_files:\n  - path: /etc/motd\n    content: hi",
			wantRuncmd: []string{"RUN"}, wantPaths: append(slices.Clone(basePaths), "/etc/motd")},
		{name: "a list key given as a scalar is refused", snippet: "runcmd: poweroff", wantErr: true},
		{name: "a list given for a mapping is refused", snippet: "write_files: {path: /x}", wantErr: true},
		{name: "a snippet that is a list is refused", snippet: "- runcmd", wantErr: true},
		{name: "a snippet that is not YAML is refused", snippet: "runcmd: [", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sn, err := parseSnippet(tc.snippet)
			if err == nil {
				_, err = renderUserData(testHook, testURL, testToken, testJIT, sn)
			}
			if tc.wantErr {
				if err == nil {
					t.Fatal("merged, want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := renderUserData(testHook, testURL, testToken, testJIT, sn)
			var doc map[string]any
			if err := yaml.Unmarshal([]byte(got), &doc); err != nil {
				t.Fatal(err)
			}
			var runcmd []string
			for _, c := range doc["runcmd"].([]any) {
				s := fmt.Sprint(c)
				if strings.Contains(s, "--jitconfig") {
					s = "RUN"
				}
				runcmd = append(runcmd, s)
			}
			if diff := cmp.Diff(runcmd, tc.wantRuncmd); diff != "" {
				t.Errorf("runcmd (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(ParseCloudConfig(t, got).paths(), tc.wantPaths); diff != "" {
				t.Errorf("write_files (-got +want):\n%s", diff)
			}
			if _, ok := doc[tc.wantKey]; tc.wantKey != "" && !ok {
				t.Errorf("merged user-data has no %s", tc.wantKey)
			}
		})
	}
}

var basePaths = []string{PreJobHookPath, PreJobEnvPath, RunnerDir + "/.env", RunOncePath}

// CloudConfig is the part of the rendered user-data the tests read (this
// package's and the external lxdprov_test's).
type CloudConfig struct {
	WriteFiles []struct {
		Path, Owner, Permissions, Content string
		Append                            bool
	} `yaml:"write_files"`
	Runcmd []any `yaml:"runcmd"`
}

// ParseCloudConfig parses rendered user-data, failing t unless it is
// #cloud-config YAML.
func ParseCloudConfig(t *testing.T, s string) CloudConfig {
	t.Helper()
	if !strings.HasPrefix(s, "#cloud-config\n") {
		t.Fatalf("user-data does not start with #cloud-config:\n%s", s)
	}
	var cc CloudConfig
	if err := yaml.Unmarshal([]byte(s), &cc); err != nil {
		t.Fatalf("user-data is not YAML: %v\n%s", err, s)
	}
	return cc
}

// File is the content user-data writes to path; it fails t when none.
func (cc CloudConfig) File(t *testing.T, path string) string {
	t.Helper()
	for _, f := range cc.WriteFiles {
		if f.Path == path {
			return f.Content
		}
	}
	t.Fatalf("user-data writes no %s", path)
	return ""
}

func (cc CloudConfig) paths() []string {
	var out []string
	for _, f := range cc.WriteFiles {
		out = append(out, f.Path)
	}
	return out
}

func testPool() config.Pool {
	return config.Pool{Name: "small", InstanceType: config.InstanceContainer, Image: "ephemera-test", CPU: 2, Memory: 4 << 30, Disk: 20 << 30, Max: 5}
}
