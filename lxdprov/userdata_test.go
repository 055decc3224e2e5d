package lxdprov

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const (
	testHook  = "#!/bin/sh\n# stand-in pre-job hook\n. /etc/ephemera/pre-job.env\nexit 0\n"
	testURL   = "http://10.0.0.1:8081"
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
