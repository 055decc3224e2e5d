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
		case (name == fieldRepository || name == fieldSourceRepository) && !validRepo(strings.TrimSpace(v)):
			problems = append(problems, name+" (not owner/name)")
		case (name == fieldTargetBranch || name == fieldSourceBranch) && !validBranch(strings.TrimSpace(v)):
			problems = append(problems, name+" (not a branch name)")
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

// validRepo reports whether s is a repository's full name as GitHub
// allows it: an owner of letters, digits and hyphens (at most 39), a
// name of letters, digits, '.', '_' and '-' (at most 100, not . or ..).
// The names go into GitHub paths (escaped as well), so anything else is a
// bad request, not a question for GitHub.
func validRepo(s string) bool {
	r, ok := parseRepoName(s)
	if !ok || len(r.owner) > 39 || len(r.name) > 100 || r.name == "." || r.name == ".." {
		return false
	}
	for _, c := range r.owner {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	for _, c := range r.name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// validBranch reports whether s can be a branch name, by git's rules for
// ref names (git check-ref-format): no control characters, space, ~ ^ : ?
// * [ or backslash, no "..", "@{" or "//", not starting or ending with
// "/", not ending with "." or ".lock", and at most 255 bytes. Slashes are
// allowed: release/1.0 is one branch, one (escaped) path segment.
func validBranch(s string) bool {
	if s == "" || len(s) > 255 || s == "@" ||
		strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") || strings.HasSuffix(s, ".") || strings.HasSuffix(s, ".lock") ||
		strings.Contains(s, "..") || strings.Contains(s, "@{") || strings.Contains(s, "//") {
		return false
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f || strings.ContainsRune(" ~^:?*[\\", c) {
			return false
		}
	}
	for _, part := range strings.Split(s, "/") {
		if strings.HasPrefix(part, ".") {
			return false
		}
	}
	return true
}
