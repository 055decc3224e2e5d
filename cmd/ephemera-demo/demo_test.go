package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestBadUsage checks that the demo refuses a bad scenario before starting
// anything, with exit status 2 and one line naming the flag.
func TestBadUsage(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no jobs", []string{"--jobs", "0"}, "--jobs must be at least 1"},
		{"no rate", []string{"--rate", "0"}, "--rate must be above zero"},
		{"five pools", []string{"--pools", "5"}, "--pools must be 1 to 4"},
		{"min idle above max", []string{"--min-idle", "6", "--max", "5"}, "--min-idle must be 0 to --max"},
		{"a negative reject-every", []string{"--reject-every", "-1"}, "--reject-every must not be negative"},
		{"too little memory", []string{"--memory", "1MiB"}, "--memory must be at least 64MiB"},
		{"a bootstrap timeout too short to boot", []string{"--bootstrap-timeout", "1s"}, "--bootstrap-timeout must be at least 10s"},
		{"an unknown flag", []string{"--nope"}, "flag provided but not defined: -nope"},
		{"a stray argument", []string{"now"}, `unexpected argument "now"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(t.Context(), tc.args, &out, &errb); code != 2 {
				t.Errorf("exit %d, want 2 (stderr %q)", code, errb.String())
			}
			last := strings.TrimRight(errb.String(), "\n")
			last = last[strings.LastIndex(last, "\n")+1:]
			if !strings.HasPrefix(last, "ephemera-demo: ") || !strings.Contains(last, tc.wantErr) {
				t.Errorf("last line of stderr %q; want ephemera-demo: …%s", last, tc.wantErr)
			}
			if out.Len() != 0 {
				t.Errorf("printed %q before refusing", out.String())
			}
		})
	}
}

func TestHelpExitsZero(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(t.Context(), []string{"-h"}, &out, &errb); code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	if !strings.Contains(errb.String(), "Usage: ephemera-demo") {
		t.Errorf("help %q", errb.String())
	}
}
