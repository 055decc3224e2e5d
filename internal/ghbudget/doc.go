// Package ghbudget is the one GitHub request budget of an installation,
// shared by every GitHub call of every ephemera process — scaler and
// policy replicas alike — so that together they never trip GitHub's
// limits: at most MaxConcurrent requests in flight (100), at most
// PointsPerMinute points a minute per REST endpoint (900; GET, HEAD and
// OPTIONS cost 1 point, other methods 5), and the primary budget GitHub
// reports in X-RateLimit-Remaining (5,000 an hour), which is read from
// every answer.
//
// # Where the budget lives
//
// In a JetStream key-value bucket (Bucket), one record per installation
// holding the points spent per endpoint in the last minute (counted in
// Slices slices), the requests each replica has in flight, the primary
// budget last reported, and any wait GitHub asked for. A request takes
// its points and its place in flight with one compare-and-set of that
// record, and gives its place back (and hands over the rate-limit headers
// of its answer) with another; each process keeps the last revision it
// wrote, so without contention each is a single KV write.
//
// The alternative, a leader handing each replica a share, was rejected:
// shares must be re-cut whenever a replica comes or goes (a lease
// interval at least), a share left idle on one replica is lost to a burst
// on another — exactly when a burst of 1,000 jobs lands on whichever
// replica pulls them — and policy replicas have no leader at all. The KV
// record needs no leader, no re-cutting, and every request sees what all
// the others spent. Its cost is two KV writes per GitHub request,
// microseconds on the bus that the scaler already writes several times
// per job. A replica that dies with requests in flight holds their places
// until its lease (LeaseTTL) runs out. A read of the record whose reply
// was lost (a NATS node restarting) is asked again after 3 s; writes
// keep the caller's deadline, and one left without an answer (that
// deadline came first, or the reply was lost) is settled before anything
// else is written: it may have been applied, and an admission wrongly
// taken as not written held its place in flight for as long as its
// process kept writing.
//
// # Never tripping a sliding minute
//
// GitHub does not document how its minute is measured, so the budget
// assumes the strictest reading, a sliding minute: it admits a request
// only when the points of the last Slices+1 slices, the current one
// included, stay within the limit. Any 60 s span lies within those, so
// no sliding minute ever sees more than the limit; the price is one
// slice in Slices (1/60 by default): ~177 registrations a minute at 5
// points under 900, rather than 180. GitHub counts a request when it
// arrives, somewhere between its admission here and its answer; so once
// answered, its points move from the slice it was admitted in to the
// slice it was answered in (Ticket.Done), and the budget forgets them no
// sooner than GitHub does. Counted from the admission only, a request
// that crossed a slice boundary on its way (a slow network, a busy
// machine) left the budget's minute before GitHub's, and the request
// admitted in its place a minute later could be answered with a rate
// limit.
//
// # Priorities
//
// Every request carries a Priority (WithPriority on its context; without
// one, a GET is Listing and anything else Cleanup): Registration (a JIT
// registration for a waiting job), then Policy, TopUp, Listing, Cleanup
// (deletes, redeliveries). A priority may fill only its share of each
// limit — all of it for registrations, less for each lower one (Shares)
// — and may spend the primary budget only down to its reserve
// (PrimaryReserve): housekeeping can never take the points, places or
// hourly requests a waiting job needs, on any replica. Within a process,
// a request waits while a request of higher priority waits for the same
// endpoint or for a place in flight. A wait GitHub asks for on one
// endpoint (a secondary limit's Retry-After) stops only that endpoint;
// only an exhausted primary budget stops everything, as it does on
// GitHub.
//
// A request waits for its budget unless the wait would outlast its
// context's deadline or MaxWait; then it fails at once with a
// *LimitedError saying until when, and the caller waits that out its own
// way (a queued job is delivered again then).
package ghbudget
