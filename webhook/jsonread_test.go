package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// refPayload is what json.Unmarshal fills for the fields decodePayload
// reads; the two must agree.
type refPayload struct {
	Action      string `json:"action"`
	WorkflowJob *struct {
		ID          int64     `json:"id"`
		RunID       int64     `json:"run_id"`
		RunAttempt  int64     `json:"run_attempt"`
		Labels      []string  `json:"labels"`
		RunnerID    int64     `json:"runner_id"`
		RunnerName  string    `json:"runner_name"`
		Conclusion  string    `json:"conclusion"`
		CreatedAt   time.Time `json:"created_at"`
		StartedAt   time.Time `json:"started_at"`
		CompletedAt time.Time `json:"completed_at"`
	} `json:"workflow_job"`
	Repository struct {
		FullName string `json:"full_name"`
		Owner    struct {
			Login string `json:"login"`
		} `json:"owner"`
	} `json:"repository"`
	Installation struct {
		ID int64 `json:"id"`
	} `json:"installation"`
}

func (p refPayload) payload() payload {
	out := payload{Action: p.Action, Repository: p.Repository.FullName, Owner: p.Repository.Owner.Login, InstallationID: p.Installation.ID}
	if j := p.WorkflowJob; j != nil {
		w := workflowJob(*j)
		out.Job = &w
	}
	return out
}

// knownKeys are the keys decodePayload matches. encoding/json also matches
// them case-insensitively; decodePayload does not, on purpose.
var knownKeys = []string{"action", "workflow_job", "repository", "installation", "id", "run_id", "run_attempt",
	"labels", "runner_id", "runner_name", "conclusion", "created_at", "started_at", "completed_at", "full_name", "owner", "login"}

// hasCaseVariantKey reports whether doc has a key that only
// case-insensitive matching would take for a known one.
func hasCaseVariantKey(doc []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(doc))
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if k, ok := tok.(string); ok {
			for _, known := range knownKeys {
				if k != known && strings.EqualFold(k, known) {
					return true
				}
			}
		}
	}
}

// checkAgainstEncodingJSON fails when jsonReader disagrees with
// encoding/json on doc: validity, the kind of error, or the values read.
func checkAgainstEncodingJSON(t *testing.T, doc []byte) {
	t.Helper()
	if got, want := validJSON(doc), json.Valid(doc); got != want {
		t.Fatalf("validJSON(%q) = %v, json.Valid = %v", doc, got, want)
	}
	var ref refPayload
	refErr := json.Unmarshal(doc, &ref)
	got, err := decodePayload(doc)
	_, refSyntax := errors.AsType[*json.SyntaxError](refErr)
	switch {
	case refSyntax || (refErr != nil && !json.Valid(doc)):
		if !errors.Is(err, errMalformedJSON) {
			t.Fatalf("decodePayload(%q) = %v, want malformed JSON (encoding/json: %v)", doc, err, refErr)
		}
	case hasCaseVariantKey(doc):
		// encoding/json folds case, decodePayload does not: they read
		// different fields, but both read the document.
		if errors.Is(err, errMalformedJSON) {
			t.Fatalf("decodePayload(%q) = %v; the document is valid", doc, err)
		}
	case refErr != nil:
		if err == nil || errors.Is(err, errMalformedJSON) {
			t.Fatalf("decodePayload(%q) = %v, want a wrong-type error (encoding/json: %v)", doc, err, refErr)
		}
	case err != nil:
		t.Fatalf("decodePayload(%q) = %v; encoding/json read it", doc, err)
	default:
		if diff := cmp.Diff(got, ref.payload()); diff != "" {
			t.Fatalf("decodePayload(%q) (-got +want encoding/json):\n%s", doc, diff)
		}
	}
}

var jsonSeeds = []string{
	`{}`, `null`, `[]`, `"x"`, `1`, `{"a":1,}`, `{"a" 1}`, `{"a":01}`, `{"a":-}`, `{"a":1.}`, `{"a":1e}`, `{"a":.5}`,
	`{"a":"\u00e9\n\"\\\/"}`, `{"a":"\x"}`, `{"a":"\u12"}`, "{\"a\":\"\x01\"}", "{\"a\":\"\xff\"}", `{"a":tru}`, `{"a":nul}`,
	` { "action" : "queued" } `, `{"action":"queued"} x`, `{"action":1}`, `{"action":null}`, `{"\u0061ction":"queued"}`,
	`{"ACTION":"queued"}`, `{"workflow_job":null}`, `{"workflow_job":[]}`, `{"workflow_job":{"id":1},"workflow_job":{"run_id":2}}`,
	`{"workflow_job":{"id":1.5}}`, `{"workflow_job":{"id":99999999999999999999}}`, `{"workflow_job":{"id":-0}}`,
	`{"workflow_job":{"labels":["a",1]}}`, `{"workflow_job":{"labels":[]}}`, `{"workflow_job":{"labels":null}}`,
	`{"workflow_job":{"labels":["a\u0042", "\u00e9"]}}`, `{"workflow_job":{"created_at":"2026-11-27T16:58:07Z"}}`,
	`{"workflow_job":{"created_at":"yesterday"}}`, `{"workflow_job":{"created_at":5}}`, `{"workflow_job":{"completed_at":null}}`,
	`{"repository":null}`, `{"repository":{"owner":{"login":"o"},"full_name":"o/r"}}`, `{"installation":{"id":"1"}}`,
	`{"a":[[[[{"b":[{}]}]]]]}`, `[1,2,,3]`, `{"a":[1 2]}`, strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
}

func TestJSONReaderAgreesWithEncodingJSON(t *testing.T) {
	for _, name := range []string{"testdata/workflow_job_queued.json", "testdata/workflow_job_completed.json", "testdata/workflow_job_small.json"} {
		b := readFile(t, name)
		checkAgainstEncodingJSON(t, b)
		for cut := 1; cut < len(b); cut += 97 {
			checkAgainstEncodingJSON(t, b[:cut]) // every kind of truncation
		}
	}
	for _, s := range jsonSeeds {
		checkAgainstEncodingJSON(t, []byte(s))
	}
}

// FuzzJSONReader checks jsonReader against encoding/json on any input.
// The seeds are small on purpose: the fuzzer minimizes every interesting
// input byte by byte, which takes minutes when they derive from the 8 KB
// fixtures (those are checked by TestJSONReaderAgreesWithEncodingJSON).
func FuzzJSONReader(f *testing.F) {
	f.Add(readFile(f, "testdata/workflow_job_small.json"))
	for _, s := range jsonSeeds[:len(jsonSeeds)-1] { // all but the deep nesting
		f.Add([]byte(s))
	}
	f.Fuzz(checkAgainstEncodingJSON)
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BenchmarkParse compares reading the ~8 KB fixture with jsonReader and
// with json.Unmarshal into the equivalent struct.
func BenchmarkParse(b *testing.B) {
	body, err := os.ReadFile("testdata/workflow_job_queued.json")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("jsonReader", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parseJob(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			var p refPayload
			if err := json.Unmarshal(body, &p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
