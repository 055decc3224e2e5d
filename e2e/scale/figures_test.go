package scale

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// percentile is the p-th percentile (0–100) of xs by nearest rank; 0 for
// none.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// Latencies are, in milliseconds of the run's clock, from each job's
// queueing to the create of the runner made for it, to that runner
// online, and to a runner (any) taking the job.
type Latencies struct{ Create, Online, Started []float64 }

// Latencies joins the harness's queue times with the provisioner
// stand-in's records and the GitHub stand-in's jobs.
func (h *Harness) Latencies() Latencies {
	queued := h.Queued()
	var l Latencies
	seen := map[int64]bool{}
	for _, r := range h.Standin.Records() {
		q, ok := queued[r.JobID]
		if !ok || seen[r.JobID] {
			continue // a buffer runner, or a replacement
		}
		seen[r.JobID] = true
		l.Create = append(l.Create, ms(r.AskedAt.Sub(q)))
		if !r.OnlineAt.IsZero() {
			l.Online = append(l.Online, ms(r.OnlineAt.Sub(q)))
		}
	}
	for _, j := range h.Fake.Jobs() {
		if q, ok := queued[j.ID]; ok && !j.StartedAt.IsZero() {
			l.Started = append(l.Started, ms(j.StartedAt.Sub(q)))
		}
	}
	return l
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// kindOf names a REST request by method and endpoint, ids and names in
// the path replaced by placeholders, as GitHub's documentation names
// endpoints.
func kindOf(method, path string) string {
	path = idSegment.ReplaceAllString(path, "/{id}")
	path = orgSegment.ReplaceAllString(path, "/orgs/{org}")
	path = repoSegment.ReplaceAllString(path, "/repos/{owner}/{repo}")
	return method + " " + path
}

var (
	idSegment   = regexp.MustCompile(`/[0-9]+`)
	orgSegment  = regexp.MustCompile(`^/orgs/[^/]+`)
	repoSegment = regexp.MustCompile(`^/repos/[^/]+/[^/]+`)
)

// GitHubRequests counts the REST requests the GitHub stand-in received
// by kind (its runner API under /_fake/ is not GitHub's), and the
// rate-limit answers among them (403 or 429).
func (h *Harness) GitHubRequests() (byKind map[string]int, total, limited int) {
	byKind = map[string]int{}
	for _, c := range h.Fake.Calls() {
		if strings.HasPrefix(c.Path, "/_fake/") {
			continue
		}
		byKind[kindOf(c.Method, c.Path)]++
		total++
		if c.Status == http.StatusForbidden || c.Status == http.StatusTooManyRequests {
			limited++
		}
	}
	return byKind, total, limited
}

// registrations is the kind of a JIT registration.
const registrations = "POST /orgs/{org}/actions/runners/generate-jitconfig"

// NATSCounts are cluster-wide JetStream counters: API requests of the
// account ($JS.API.INFO, summed over the servers by NATS itself) and
// messages written to the key-value buckets (each put, create, update or
// delete is one) and to the job stream.
type NATSCounts struct {
	API, KVWrites, JobMessages uint64
}

func (h *Harness) NATSCounts(t testing.TB) NATSCounts {
	t.Helper()
	nc, err := nats.Connect(h.Cluster.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var c NATSCounts
	msg, err := nc.RequestWithContext(ctx, "$JS.API.INFO", nil)
	if err != nil {
		t.Fatalf("$JS.API.INFO: %v", err)
	}
	var info struct {
		API struct{ Total uint64 } `json:"api"`
	}
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		t.Fatalf("$JS.API.INFO: %v", err)
	}
	c.API = info.API.Total
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	streams := js.ListStreams(ctx)
	for si := range streams.Info() {
		switch {
		case strings.HasPrefix(si.Config.Name, "KV_"):
			c.KVWrites += si.State.LastSeq
		case si.Config.Name == "EPHEMERA_JOBS":
			c.JobMessages += si.State.LastSeq
		}
	}
	if err := streams.Err(); err != nil {
		t.Fatalf("list streams: %v", err)
	}
	return c
}

// Usage is a process's CPU time so far and its peak resident memory.
type Usage struct {
	CPU     time.Duration
	PeakRSS int64 // bytes
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times on Linux.
const clockTicks = 100

// Usage reads /proc for the process's CPU seconds (user + system) and
// VmHWM.
func (p *proc) Usage(t testing.TB) Usage {
	t.Helper()
	pid := p.cmd.Process.Pid
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	// Fields after the command name (which may hold spaces), from field 3.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	u := Usage{CPU: time.Duration(utime+stime) * time.Second / clockTicks}
	st, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	defer st.Close()
	sc := bufio.NewScanner(st)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			u.PeakRSS = kb << 10
		}
	}
	return u
}

// Reconciles sums, over the live scaler replicas, the passes their
// ephemera_reconcile_seconds histograms counted and the seconds they
// took.
func (h *Harness) Reconciles(t testing.TB) (count, seconds float64) {
	t.Helper()
	for _, s := range h.Scalers {
		if !s.Alive() {
			continue
		}
		resp, err := http.Get("http://" + s.metrics + "/metrics")
		if err != nil {
			t.Fatalf("%s metrics: %v", s.name, err)
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "ephemera_reconcile_seconds_count "); ok {
				n, _ := strconv.ParseFloat(v, 64)
				count += n
			}
			if v, ok := strings.CutPrefix(line, "ephemera_reconcile_seconds_sum "); ok {
				n, _ := strconv.ParseFloat(v, 64)
				seconds += n
			}
		}
		resp.Body.Close()
	}
	return count, seconds
}
