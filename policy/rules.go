package policy

import (
	"encoding/json"
	"errors"
	"regexp"
)

// unknownRule names a rule whose type GitHub did not send as a string.
const unknownRule = "unknown"

// errRulesAnswer is an answer of the branch-rules endpoint that is not a
// JSON array: GitHub answered unexpectedly, and the check fails closed.
var errRulesAnswer = errors.New("branch rules: the answer is not a JSON array")

// ruleTypeRE is what a rule type looks like (merge_queue, pull_request…);
// anything else is reported as unknownRule, so an answer never puts
// arbitrary text into a reason.
var ruleTypeRE = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)

// ruleTypes reads the answer of GET /repos/{o}/{r}/rules/branches/{b}
// tolerantly: every element of the array is a rule, whatever its type
// (GitHub adds rule types; go-github v60 fails on eight of today's 23) and
// whether or not it carries parameters (the REST description requires
// only type). Only the type is read.
func ruleTypes(raw json.RawMessage) ([]string, error) {
	var rules []json.RawMessage
	if err := json.Unmarshal(raw, &rules); err != nil || rules == nil {
		return nil, errRulesAnswer
	}
	types := make([]string, 0, len(rules))
	for _, r := range rules {
		var rule struct {
			Type any `json:"type"`
		}
		typ := unknownRule
		if json.Unmarshal(r, &rule) == nil {
			if s, ok := rule.Type.(string); ok && ruleTypeRE.MatchString(s) {
				typ = s
			}
		}
		types = append(types, typ)
	}
	return types, nil
}
