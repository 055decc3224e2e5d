package tooltest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The helper's behaviour is checked in a child process, where a skip or a
// failure can be observed from outside.
func TestMissingToolSkipsOrFails(t *testing.T) {
	if os.Getenv("TOOLTEST_CHILD") == "1" {
		Path(t, "no-such-package", "ephemera-no-such-tool")
		t.Log("reached past a missing tool")
		return
	}
	for _, tc := range []struct {
		name    string
		require string
		wantErr bool
	}{
		{"a missing tool skips the test by default", "", false},
		{"a missing tool fails the test when tools are required", "1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestMissingToolSkipsOrFails$", "-test.v")
			cmd.Env = append(os.Environ(), "TOOLTEST_CHILD=1", EnvRequire+"="+tc.require)
			out, err := cmd.CombinedOutput()
			if (err != nil) != tc.wantErr {
				t.Fatalf("child exit error %v, want error %v\n%s", err, tc.wantErr, out)
			}
			if !tc.wantErr && !strings.Contains(string(out), "--- SKIP") {
				t.Fatalf("child did not skip:\n%s", out)
			}
		})
	}
}

func TestPathFindsATool(t *testing.T) {
	if got := Path(t, "coreutils", "ephemera-no-such-tool", "sh"); got == "" {
		t.Fatal("sh not found")
	}
}
