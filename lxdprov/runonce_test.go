package lxdprov

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRunOncePowersOffWhateverTheImage runs the rendered run-once.sh
// with stand-ins for su, systemctl, poweroff and sleep (the real ones
// would stop this machine) and checks the power-off path: a clean
// power-off first, without D-Bus; a forced one when the clean one cannot
// be asked or the machine is still up after the grace period. The real
// path on a real image is exercised by the end-to-end test on LXD
// (e2e/realimage), where every instance must stop and be deleted.
func TestRunOncePowersOffWhateverTheImage(t *testing.T) {
	rendered, err := renderUserData(testHook, testURL, testToken, testJIT, nil)
	if err != nil {
		t.Fatal(err)
	}
	script := ParseCloudConfig(t, rendered).File(t, RunOncePath)
	for _, tc := range []struct {
		name string
		// exit status of each stand-in command line; absent: 0.
		fail    map[string]bool
		missing []string // commands the image does not have
		grace   string
		want    []string
	}{
		{
			name:  "systemd: a clean power-off, forced if the machine is still up after the grace period",
			grace: "",
			want: []string{
				"su -s /bin/sh -c cd /opt/actions-runner && exec ./run.sh --jitconfig X runner",
				"systemctl --no-wall --check-inhibitors=no poweroff",
				"sleep 60",
				"systemctl --force poweroff",
			},
		},
		{
			name:  "systemd cannot be asked: forced at once, through the kernel when systemd does not answer",
			grace: "60",
			fail: map[string]bool{
				"systemctl --no-wall --check-inhibitors=no poweroff": true, "poweroff": true,
				"systemctl --force poweroff": true,
			},
			want: []string{
				"su -s /bin/sh -c cd /opt/actions-runner && exec ./run.sh --jitconfig X runner",
				"systemctl --no-wall --check-inhibitors=no poweroff",
				"poweroff",
				"sleep 0",
				"systemctl --force poweroff",
				"systemctl --force --force poweroff",
			},
		},
		{
			name:    "no systemd (busybox, sysvinit): poweroff, then poweroff -f",
			grace:   "5",
			missing: []string{"systemctl"},
			want: []string{
				"su -s /bin/sh -c cd /opt/actions-runner && exec ./run.sh --jitconfig X runner",
				"poweroff",
				"sleep 5",
				"poweroff -f",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "bin")
			calls := filepath.Join(dir, "calls")
			if err := os.Mkdir(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, cmd := range []string{"su", "systemctl", "poweroff", "sleep"} {
				if contains(tc.missing, cmd) {
					continue
				}
				// Each stand-in records its command line and exits 1 when
				// the line is listed in fail.
				var failing []string
				for line, f := range tc.fail {
					if f && strings.HasPrefix(line, cmd) {
						failing = append(failing, "'"+line+"'")
					}
				}
				stub := "#!/bin/sh\nline=\"" + cmd + "${*:+ $*}\"\necho \"$line\" >>'" + calls + "'\ncase $line in\n"
				if len(failing) > 0 {
					stub += strings.Join(failing, "|") + ") exit 1 ;;\n"
				}
				stub += "esac\nexit 0\n"
				if err := os.WriteFile(filepath.Join(bin, cmd), []byte(stub), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			sh := filepath.Join(dir, "run-once.sh")
			if err := os.WriteFile(sh, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("/bin/sh", sh, "./run.sh", "--jitconfig", "X")
			cmd.Env = []string{"PATH=" + bin}
			if tc.grace != "" {
				cmd.Env = append(cmd.Env, "EPHEMERA_POWEROFF_GRACE="+tc.grace)
			}
			out, _ := cmd.CombinedOutput()
			got, _ := os.ReadFile(calls)
			if diff := cmp.Diff(strings.Split(strings.TrimSpace(string(got)), "\n"), tc.want); diff != "" {
				t.Errorf("commands run (-got +want):\n%s\noutput:\n%s", diff, out)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
