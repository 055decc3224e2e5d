package jobs

import "testing"

func TestSubjectRoundTrips(t *testing.T) {
	for _, a := range []Action{Queued, Waiting, InProgress, Completed} {
		s := Subject("small-x64", a)
		pool, action, err := ParseSubject(s)
		if err != nil || pool != "small-x64" || action != a {
			t.Errorf("ParseSubject(%q) = %q, %q, %v", s, pool, action, err)
		}
	}
}

func TestParseSubjectRejectsOtherSubjects(t *testing.T) {
	for _, s := range []string{"", "ephemera.jobs.", "ephemera.jobs.small", "ephemera.jobs.small.requested", "ephemera.jobs..queued", "other.small.queued"} {
		if _, _, err := ParseSubject(s); err == nil {
			t.Errorf("ParseSubject(%q) succeeded, want an error", s)
		}
	}
}
