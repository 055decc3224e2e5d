package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v3"

	"github.com/ephemera-ci/ephemera/e2e/e2etest"
	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/serve"
	"github.com/ephemera-ci/ephemera/internal/tooltest"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
)

// The operator files under deploy/ that Prometheus and Grafana consume.
var (
	alertsFile     = filepath.Join("..", "..", "deploy", "prometheus", "alerts.yml")
	alertTestsFile = filepath.Join("..", "..", "deploy", "prometheus", "alerts_test.yml")
	dashboardFile  = filepath.Join("..", "..", "deploy", "grafana", "ephemera.json")
)

func promtool(t *testing.T, stdin io.Reader, args ...string) {
	t.Helper()
	cmd := exec.Command(tooltest.Path(t, "prometheus", "promtool"), args...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

func TestAlertRulesPassPromtool(t *testing.T) {
	promtool(t, nil, "check", "rules", alertsFile)
	promtool(t, nil, "test", "rules", alertTestsFile)
}

// Every alert has a unit test that expects it to fire and one that
// expects it not to.
func TestEveryAlertIsTestedFiringAndNotFiring(t *testing.T) {
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				AlertName string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	readYAML(t, alertsFile, &rules)
	readYAML(t, alertTestsFile, &tests)
	firing, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				firing[a.AlertName] = true
			} else {
				quiet[a.AlertName] = true
			}
		}
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if !firing[r.Alert] || !quiet[r.Alert] {
				t.Errorf("alert %s: tested firing %v, not firing %v; want both", r.Alert, firing[r.Alert], quiet[r.Alert])
			}
		}
	}
	if n < 7 {
		t.Errorf("%d alerts in %s, want at least 7", n, alertsFile)
	}
}

// grafanaVars are what the dashboard's variables stand for when its
// queries are checked as plain PromQL.
var grafanaVars = map[string]string{"__rate_interval": "5m", "__interval": "1m", "pool": ".+"}

var grafanaVar = regexp.MustCompile(`\$\{?(\w+)\}?`)

// dashboardQueries returns every PromQL expression of the dashboard, its
// variables replaced, keyed by where it is ("panel 3 A").
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	var d struct {
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	out := map[string]string{}
	subst := func(where, expr string) {
		out[where] = grafanaVar.ReplaceAllStringFunc(expr, func(m string) string {
			v, ok := grafanaVars[grafanaVar.FindStringSubmatch(m)[1]]
			if !ok {
				t.Errorf("%s: unknown dashboard variable %s in %q", where, m, expr)
			}
			return v
		})
	}
	labelValues := regexp.MustCompile(`^label_values\((\w+),\s*\w+\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(metric, label)", v.Name, v.Definition)
			continue
		}
		subst("variable "+v.Name, m[1])
	}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %d %q has no query", p.ID, p.Title)
		}
		for _, tg := range p.Targets {
			subst(fmt.Sprintf("panel %d %s (%s)", p.ID, tg.RefID, p.Title), tg.Expr)
		}
	}
	return out
}

// Grafana is not in Debian's archive, so each panel's query is checked by
// promtool as the expression of a recording rule.
func TestDashboardQueriesPassPromtool(t *testing.T) {
	qs := dashboardQueries(t)
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range qs {
			if !yield(k) {
				return
			}
		}
	})
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for i, k := range keys {
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:query_%d", i), Expr: qs[k]})
		t.Logf("dashboard:query_%d = %s: %s", i, k, qs[k])
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	promtool(t, nil, "check", "rules", f)
}

// metricName finds the metric names in PromQL: identifiers starting with
// ephemera_ (other names, like up, are not ours to check).
var metricName = regexp.MustCompile(`\bephemera_[a-z0-9_]+`)

// registeredFamilies builds every component of `ephemera serve` in this
// process (serve.Build, as the command does) and lists the metric families its registry describes: every
// family the binary registers, whether or not it has a sample yet.
func registeredFamilies(t *testing.T) map[string]bool {
	t.Helper()
	lxdtest.Require(t) // serve builds the scaler, which connects to LXD
	t.Setenv("EPHEMERA_POLICY_ADMIN_TOKEN", "s3cr3t-admin-value-for-monitoring-tests")
	t.Setenv("EPHEMERA_GITHUB_TOKEN", "s3cr3t-github-value-for-monitoring-tests")
	cfg, err := loadConfig(writeConfig(t, checkConfig), config.RoleServe)
	if err != nil {
		t.Fatal(err)
	}
	p, err := serve.Build(t.Context(), cfg, config.RoleServe, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { // Run with an ended context only closes what Build opened.
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_ = p.Run(ctx)
	}()
	ch := make(chan *prometheus.Desc)
	go func() {
		p.Registry().Describe(ch)
		close(ch)
	}()
	// Desc keeps its name private; its String form is documented enough
	// to read it from: Desc{fqName: "name", ...}.
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	out := map[string]bool{}
	for d := range ch {
		if m := fq.FindStringSubmatch(d.String()); m != nil {
			out[m[1]] = true
		}
	}
	if !out["ephemera_jobs_total"] || !out["ephemera_webhook_requests_total"] {
		t.Fatalf("the registry's families were not read (got %d): the Desc format changed?", len(out))
	}
	return out
}

// known reports whether name is a registered family or a histogram's
// _bucket, _sum or _count series.
func known(families map[string]bool, name string) bool {
	if families[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && families[base] {
			return true
		}
	}
	return false
}

func TestDashboardAndAlertsNameOnlyRegisteredMetrics(t *testing.T) {
	families := registeredFamilies(t)
	alerts, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	sources := map[string]string{alertsFile: string(alerts)}
	for where, q := range dashboardQueries(t) {
		sources[dashboardFile+" "+where] = q
	}
	used := map[string]bool{}
	for where, text := range sources {
		for _, name := range metricName.FindAllString(text, -1) {
			used[name] = true
			if !known(families, name) {
				t.Errorf("%s names %s, which ephemera serve does not register", where, name)
			}
		}
	}
	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	t.Logf("%d metric names used: %s", len(names), strings.Join(names, " "))
}

// promtool check metrics lints the exposition of a real `ephemera serve`
// (the built binary, NATS embedded, the scaler on LXD).
func TestServeMetricsPassPromtoolCheck(t *testing.T) {
	lxdtest.Require(t)
	tooltest.Path(t, "prometheus", "promtool")
	metricsAddr := e2etest.FreePort(t)
	doc := strings.NewReplacer(
		"name: small", "name: "+lxdtest.Pool().Name,
		`metrics: { listen: "127.0.0.1:0" }`, `metrics: { listen: "`+metricsAddr+`" }`,
	).Replace(checkConfig)
	p := startServe(t, writeConfig(t, doc), "http://"+metricsAddr+"/readyz")
	defer p.stop(t)
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	for _, want := range []string{"ephemera_pool_max", "ephemera_github_rate_remaining", "ephemera_scaler_leader"} {
		if !bytes.Contains(body, []byte("\n"+want+"")) {
			t.Errorf("/metrics has no %s", want)
		}
	}
	promtool(t, bytes.NewReader(body), "check", "metrics")
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
