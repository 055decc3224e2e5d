package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Sections of the policy document: the events a check-run is for.
const (
	SectionPullRequest      = "pull_request"
	SectionWorkflowDispatch = "workflow_dispatch"
	SectionPush             = "push"
	SectionSchedule         = "schedule"
)

// Rules (checks) of the policy document.
const (
	RuleTargetBranchProtection = "target_branch_protection"
	RuleCollaborators          = "collaborators"
	RuleDisallowFork           = "disallow_fork"
	RuleExecuteJob             = "execute_job"
	RuleExternalContributor    = "external_contributor"
)

// schema lists each section's rules, in the order they run.
var schema = map[string][]string{
	SectionPullRequest: {
		RuleTargetBranchProtection, RuleCollaborators, RuleDisallowFork,
		RuleExecuteJob, RuleExternalContributor,
	},
	SectionWorkflowDispatch: {RuleCollaborators},
	SectionPush:             {RuleCollaborators},
	SectionSchedule:         {RuleCollaborators},
}

var sections = []string{SectionPullRequest, SectionWorkflowDispatch, SectionPush, SectionSchedule}

// Document is a policy document: which rules run for which event. A rule
// the document does not mention is enabled, except external_contributor,
// which is off unless enabled explicitly.
type Document struct {
	rules map[string]map[string]bool // section → rule → enabled, as written
}

// DefaultDocument is the policy used until an operator posts one: every
// rule enabled except disallow_fork (unless disallowFork) and
// external_contributor.
func DefaultDocument(disallowFork bool) Document {
	d := Document{rules: map[string]map[string]bool{}}
	for _, sec := range sections {
		d.rules[sec] = map[string]bool{}
		for _, rule := range schema[sec] {
			d.rules[sec][rule] = true
		}
	}
	d.rules[SectionPullRequest][RuleDisallowFork] = disallowFork
	d.rules[SectionPullRequest][RuleExternalContributor] = false
	return d
}

// Enabled reports whether rule runs for section.
func (d Document) Enabled(section, rule string) bool {
	if on, ok := d.rules[section][rule]; ok {
		return on
	}
	return rule != RuleExternalContributor
}

// Expanded returns the document with every rule of every section written
// out with its effective value.
func (d Document) Expanded() Document {
	out := Document{rules: map[string]map[string]bool{}}
	for _, sec := range sections {
		out.rules[sec] = map[string]bool{}
		for _, rule := range schema[sec] {
			out.rules[sec][rule] = d.Enabled(sec, rule)
		}
	}
	return out
}

type ruleJSON struct {
	Enabled bool `json:"enabled"`
}

// MarshalJSON writes the document in the policy document format.
func (d Document) MarshalJSON() ([]byte, error) {
	out := map[string]map[string]ruleJSON{}
	for sec, rules := range d.rules {
		out[sec] = map[string]ruleJSON{}
		for rule, on := range rules {
			out[sec][rule] = ruleJSON{Enabled: on}
		}
	}
	return json.Marshal(out)
}

// DocumentError lists every problem of an invalid policy document.
type DocumentError struct{ Problems []string }

func (e *DocumentError) Error() string {
	return "invalid policy document: " + strings.Join(e.Problems, "; ")
}

// ParseDocument reads and validates a policy document: a JSON object of
// sections, each an object of rules, each {"enabled": true|false}.
// Unknown sections, rules and keys are refused, by name.
func ParseDocument(b []byte) (Document, error) {
	var top map[string]json.RawMessage
	if err := decodeObject(b, &top); err != nil {
		return Document{}, &DocumentError{Problems: []string{"the document is not a JSON object"}}
	}
	d := Document{rules: map[string]map[string]bool{}}
	var problems []string
	for _, sec := range sortedKeys(top) {
		allowed, ok := schema[sec]
		if !ok {
			problems = append(problems, fmt.Sprintf("unknown key %q", sec))
			continue
		}
		var rules map[string]json.RawMessage
		if err := decodeObject(top[sec], &rules); err != nil {
			problems = append(problems, fmt.Sprintf("%s must be an object", sec))
			continue
		}
		d.rules[sec] = map[string]bool{}
		for _, rule := range sortedKeys(rules) {
			path := sec + "." + rule
			if !slices.Contains(allowed, rule) {
				problems = append(problems, fmt.Sprintf("unknown key %q", path))
				continue
			}
			on, p := parseRule(path, rules[rule])
			problems = append(problems, p...)
			d.rules[sec][rule] = on
		}
	}
	if len(problems) > 0 {
		return Document{}, &DocumentError{Problems: problems}
	}
	return d, nil
}

func parseRule(path string, raw json.RawMessage) (bool, []string) {
	var fields map[string]json.RawMessage
	if err := decodeObject(raw, &fields); err != nil {
		return false, []string{fmt.Sprintf("%s must be an object", path)}
	}
	var problems []string
	for _, k := range sortedKeys(fields) {
		if k != "enabled" {
			problems = append(problems, fmt.Sprintf("unknown key %q", path+"."+k))
		}
	}
	v, ok := fields["enabled"]
	if !ok {
		return false, append(problems, fmt.Sprintf("%s.enabled is required", path))
	}
	var on bool
	if err := json.Unmarshal(v, &on); err != nil {
		return false, append(problems, fmt.Sprintf("%s.enabled must be true or false", path))
	}
	return on, problems
}

// decodeObject decodes a JSON object (not null, not another type).
func decodeObject(b []byte, v *map[string]json.RawMessage) error {
	if t := bytes.TrimSpace(b); len(t) == 0 || t[0] != '{' {
		return fmt.Errorf("not an object")
	}
	return json.Unmarshal(b, v)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
