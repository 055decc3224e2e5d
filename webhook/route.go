package webhook

import (
	"strings"

	"github.com/ephemera-ci/ephemera/internal/config"
)

// router picks the pool a job runs in.
type router struct {
	pools []config.Pool // config order
}

// route returns the first pool, in config order, that has every one of the
// job's labels, compared case-insensitively (GitHub matches runs-on labels
// that way). A job without labels matches no pool.
func (r router) route(labels []string) (string, bool) {
	if len(labels) == 0 {
		return "", false
	}
	for _, p := range r.pools {
		if covers(p.Labels, labels) {
			return p.Name, true
		}
	}
	return "", false
}

// covers reports whether every label of job is in pool.
func covers(pool, job []string) bool {
	for _, want := range job {
		found := false
		for _, have := range pool {
			if strings.EqualFold(have, want) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
