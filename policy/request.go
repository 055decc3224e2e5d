package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// event is a check-run endpoint: the event it is for and the section of
// the policy document that applies.
type event struct {
	name    string // the path segment and the event label of the metrics
	section string
	pr      bool // the body describes a pull request
}

var (
	eventPullRequest      = event{"pull_request", SectionPullRequest, true}
	eventWorkflowDispatch = event{"workflow_dispatch", SectionWorkflowDispatch, false}
	eventPush             = event{"push", SectionPush, false}
	eventSchedule         = event{"schedule", SectionSchedule, false}
	eventDefault          = event{"default", SectionPush, false} // follows push
)

// Body fields of a check-run.
const (
	fieldRepository       = "repository_name"
	fieldSourceRepository = "source_repository_name"
	fieldTargetBranch     = "target_branch_name"
	fieldSourceBranch     = "source_branch_name"
	fieldCommitSHA        = "commit_sha"
)

func (e event) fields() []string {
	if e.pr {
		return []string{fieldRepository, fieldSourceRepository, fieldTargetBranch, fieldSourceBranch, fieldCommitSHA}
	}
	return []string{fieldRepository}
}

// maxBody bounds a request body.
const maxBody = 1 << 20

// errNotJSON is a request whose content type is not JSON: 415.
var errNotJSON = errors.New("the request body must be JSON, sent with Content-Type: application/json")

// badRequestError is a JSON body that is not what the endpoint takes: 400.
type badRequestError struct{ msg string }

func (e *badRequestError) Error() string { return e.msg }

// readJSON checks the content type and reads the body.
func readJSON(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, errNotJSON
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return nil, &badRequestError{fmt.Sprintf("The request body could not be read or is larger than %d bytes.", maxBody)}
	}
	return b, nil
}

// parseCheckRun reads a check-run body: every field a non-empty string,
// repositories as owner/name. The error names every field in fault.
func parseCheckRun(ev event, body []byte) (checkInput, error) {
	var fields map[string]json.RawMessage
	if err := decodeObject(body, &fields); err != nil {
		return checkInput{}, &badRequestError{fmt.Sprintf("The request body is not a JSON object; it must have the string fields %s.", strings.Join(ev.fields(), ", "))}
	}
	values := map[string]string{}
	var problems []string
	for _, name := range ev.fields() {
		raw, ok := fields[name]
		var v string
		switch {
		case !ok:
			problems = append(problems, name+" (missing)")
		case string(bytes.TrimSpace(raw)) == "null" || json.Unmarshal(raw, &v) != nil:
			problems = append(problems, name+" (not a string)")
		case strings.TrimSpace(v) == "":
			problems = append(problems, name+" (empty)")
		case (name == fieldRepository || name == fieldSourceRepository) && !validRepo(v):
			problems = append(problems, name+" (not owner/name)")
		default:
			values[name] = strings.TrimSpace(v)
		}
	}
	if len(problems) > 0 {
		return checkInput{}, &badRequestError{"Invalid fields: " + strings.Join(problems, ", ") + "."}
	}
	in := checkInput{
		targetBranch: values[fieldTargetBranch],
		sourceBranch: values[fieldSourceBranch],
		sha:          values[fieldCommitSHA],
	}
	in.repo, _ = parseRepoName(values[fieldRepository])
	in.source = in.repo
	if ev.pr {
		in.source, _ = parseRepoName(values[fieldSourceRepository])
	}
	return in, nil
}

func validRepo(s string) bool {
	_, ok := parseRepoName(s)
	return ok
}
