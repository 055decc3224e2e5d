package scaler

import "strconv"

// GitHub's runner list costs a page per 100 runners on every read, and
// most passes learn nothing from it that the webhooks did not say: a job
// that starts or ends on a runner says so in its in_progress and
// completed events. What only the list tells is which runners are online
// and idle, and which registrations have no instance. So the leader
// reads it every listEvery-th pass (the first after taking the lease
// included), and at every pass where a decision only the list can settle
// is due, as KV shows before the list is read (listDue):
//
//   - a runner not seen online nor busy past bootstrap_timeout (to be
//     deleted if it never came online);
//   - an idle runner to retire or whose token is to be extended;
//   - a pool with more idle runners past idle_grace than its buffer (to
//     trim), or fewer runners that are not busy than its buffer (to top
//     up: the list tells idle from booting);
//   - a job that may be stuck (its claim is past the checks planStuck
//     makes), or a claim whose claimant is gone;
//   - the last read failed.
//
// A pass without the list does what KV and the instance list settle
// (adoption, slot release, stopped instances, marks from webhooks) and
// leaves the census (status and gauges) as the last list left it. The
// bound: an orphan registration, or a runner state a lost webhook would
// have told, is seen within listEvery intervals (1 min at the default
// 30 s), and acted on in the pass that sees it. A displaced job with no
// spare runner (see displacedJobs) waits for a pass that lists anyway:
// KV alone cannot tell it from one whose in_progress event is still on
// its way, and listing for it cost 0.07 requests a job in
// BenchmarkGitHubSpendPerJob, where it was never needed.

// listEvery: GitHub's runner list is read every this many passes while
// nothing is due.
const listEvery = 2

// listDue says why this pass must read GitHub's runner list ("" when it
// need not), from KV alone: w's records and claims.
func (p planner) listDue(w *world) string {
	available := map[string]int{} // pool → runners not busy nor done
	idlePast := map[string]int{}  // pool → runners idle for idle_grace
	for _, e := range w.recs {
		r := e.Val
		if r.V > schemaVersion || r.State.rank() >= runnerBusy.rank() {
			continue
		}
		available[r.Pool]++
		switch {
		case r.State != runnerProvisioning && r.OnlineAt.IsZero() && p.now.Sub(r.CreatedAt) > p.bootstrapTimeout:
			return "a runner not seen online within bootstrap_timeout"
		case r.IdleSince.IsZero():
		case p.retiring(r):
			return "an idle runner to retire"
		case p.tokenDue(r):
			return "an idle runner's token to extend"
		case p.now.Sub(r.IdleSince) >= p.idleGrace:
			idlePast[r.Pool]++
		}
	}
	for _, pool := range p.pools {
		buffer := p.bufferOf(pool)
		if idlePast[pool.Name] > buffer {
			return "idle runners to trim"
		}
		if available[pool.Name] < buffer {
			return "a buffer to top up"
		}
	}
	for _, c := range w.claims {
		if p.maybeStuck(c.Val) {
			return "a job that may be stuck"
		}
	}
	return ""
}

// retiring reports whether retire would replace idle runner r.
func (p planner) retiring(r runnerRec) bool {
	count, _ := p.retire(r)
	return count != ""
}

// maybeStuck reports whether planStuck could act on claim c on a pass
// with the runner list: the checks it makes before it looks at the
// instances.
func (p planner) maybeStuck(c claimRec) bool {
	if !c.waiting() || c.V > schemaVersion {
		return false
	}
	switch c.State {
	case claimProvisioned:
		return p.now.Sub(c.ClaimedAt) >= p.bootstrapTimeout
	case claimClaimed:
		return !p.now.Before(c.Deadline.Add(takeoverGrace+2*p.interval)) || p.gone(c.Owner, c.Heartbeats)
	}
	return false
}

// listNow decides whether this pass reads the runner list, and counts
// the pass: every listEvery-th, after a failed read, or when w says a
// decision is due.
func (s *Scaler) listNow(p planner, w *world) (bool, string) {
	pass := s.listPass
	s.listPass++
	switch {
	case pass%listEvery == 0:
		return true, "every " + strconv.Itoa(listEvery) + " passes"
	case s.listFailed:
		return true, "the last read failed"
	}
	if why := p.listDue(w); why != "" {
		return true, why
	}
	return false, ""
}
