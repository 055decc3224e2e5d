package policy_test

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

var pushEnv = map[string]string{"GITHUB_EVENT_NAME": "push", "GITHUB_REPOSITORY": "acme/widgets"}

// TestHookVerifiesTLS: with an https URL the hook verifies the policy
// service's certificate, against EPHEMERA_POLICY_CA_FILE from its own
// file; a certificate it cannot verify is a fault of the service, and the
// runner stops.
func TestHookVerifiesTLS(t *testing.T) {
	requireTools(t)
	e := newEnv(t)
	e.gh.SetRepo(compliant())
	srv := httptest.NewTLSServer(e.svc.Handler())
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "policy-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}

	tok := e.mint(t)
	run := runHookWith(t, "EPHEMERA_POLICY_URL="+srv.URL+"\nEPHEMERA_POLICY_TOKEN="+tok+"\nEPHEMERA_POLICY_CA_FILE="+ca+"\n", tok, pushEnv, false)
	if run.exit != 0 || !strings.Contains(run.output, "check passed") {
		t.Errorf("https with its CA: exit %d, output %q, want a pass", run.exit, run.output)
	}

	tok = e.mint(t)
	run = runHookWith(t, "EPHEMERA_POLICY_URL="+srv.URL+"\nEPHEMERA_POLICY_TOKEN="+tok+"\n", tok, pushEnv, true)
	if run.exit != 1 || !strings.Contains(run.output, "the policy service is at fault") {
		t.Errorf("https with a certificate the system does not trust: exit %d, output %q, want the runner stopped, blaming the service", run.exit, run.output)
	}
}

// TestHookTakesNothingFromTheEnvironment: a job shapes the environment the
// hook runs in. The real policy service refuses the job; a stand-in that
// passes everything is offered through every variable that could redirect
// the hook — another settings file, proxies, curl's CA and config — and
// the hook still asks the real service and stops the runner.
func TestHookTakesNothingFromTheEnvironment(t *testing.T) {
	requireTools(t)
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "The repository is not compliant.", http.StatusForbidden)
	}))
	t.Cleanup(refuse.Close)
	var lured atomic.Int32
	pass := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		lured.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(pass.Close)

	dir := t.TempDir()
	token := strings.Repeat("cd", 32)
	forged := filepath.Join(dir, "forged.env")
	if err := os.WriteFile(forged, []byte("EPHEMERA_POLICY_URL="+pass.URL+"\nEPHEMERA_POLICY_TOKEN="+token+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".curlrc"), []byte("proxy = \""+pass.URL+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"EPHEMERA_PRE_JOB_ENV": forged,
		"http_proxy":           pass.URL, "HTTP_PROXY": pass.URL, "https_proxy": pass.URL, "ALL_PROXY": pass.URL,
		"CURL_HOME": dir, "CURL_CA_BUNDLE": forged, "BASH_ENV": forged,
		"EPHEMERA_POLICY_TIMEOUT": "x",
	}
	for k, v := range pushEnv {
		env[k] = v
	}
	run := runHookWith(t, "EPHEMERA_POLICY_URL="+refuse.URL+"\nEPHEMERA_POLICY_TOKEN="+token+"\n", token, env, true)
	if run.exit != 1 || !strings.Contains(run.output, "not compliant") {
		t.Errorf("exit %d, output %q, want the real service's refusal", run.exit, run.output)
	}
	if n := lured.Load(); n != 0 {
		t.Errorf("the environment led the hook to a stand-in %d times", n)
	}
}
