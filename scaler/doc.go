// Package scaler gives every queued GitHub job a fresh, ephemeral runner
// instance, keeps a warm buffer of idle runners per pool under a hard
// maximum, and reconciles LXD, GitHub and its own state so that nothing is
// left behind. Its state lives in JetStream key-value buckets, so any
// number of replicas can run at once, and any of them may crash at any
// moment.
//
// # Seams
//
// The scaler owns two narrow interfaces: [Provisioner] (create, list,
// delete instances; lxdprov implements it on LXD) and [GitHub] (JIT-register,
// remove and list runners, read a job; package ghactions implements it
// with go-github, for an org or a repository, and answers with the
// scaler's own errors, such as [RateLimitedError]). A GitHub that also
// implements [HookDeliveries] gets failed webhooks redelivered.
// One-time policy tokens come from a [TokenMinter].
//
// # State: one owner per record
//
// Job claims (BucketJobs) and runner records (BucketRunners) are each
// owned by a store type, claimStore in claims.go and runnerStore in
// runners.go: every write goes through them, and every change of state
// through one of the record's transitions (claimRec.claim, takeOver,
// giveBack, provisioned, started, completed, fence; runnerRec.created,
// busy, idle, done, …). A transition is a pure method that moves the
// record forward or reports that it does not apply, so replaying an event
// changes nothing; the store runs it by compare-and-set. Records carry
// the schema version that wrote them, and a replica never rewrites a
// record of a newer version (the rule is in state.go), so two versions
// can run side by side during a rolling upgrade. One clock, Config.Now,
// is read by every decision.
//
// # Consuming jobs
//
// All replicas share one durable pull consumer on the job stream. For a
// queued job the handler:
//
//  1. claims the job: key <job id> in BucketJobs, created first-wins (or
//     moved from "waiting" by compare-and-set). The claim names the
//     runner to be created and a deadline. A duplicate delivery — a
//     redelivery, the same job under a new delivery id, another replica —
//     finds the claim and creates nothing: one job, one job-bound runner.
//  2. takes a slot: one of the keys <pool>.0 … <pool>.<max-1> in
//     BucketSlots, with kv.Create, which only one writer wins. A slot is
//     held from before the registration until the instance is gone from
//     the provisioner, powering-off instances included, so instances plus
//     creates in flight never exceed max, across all replicas. Each
//     replica hands a slot that looks free (its watch of the bucket) to
//     one waiting job at a time, before the job is claimed, so that when a
//     few slots free up only as many of its jobs go after them, each after
//     another one. A job with no such slot — a full pool — marks its claim
//     "waiting" (for `ephemera status`) and naks the message with
//     CapacityRetry, without any other write; a replica that finds a pool
//     full asks for a sweep that frees the slots of vanished instances at
//     once.
//  3. records the runner (BucketRunners), mints its policy token,
//     JIT-registers it (a few retries under the same name; a 409 after a
//     lost answer is resolved by removing the stale registration), and
//     creates the instance, heartbeating the message meanwhile.
//  4. marks the claim provisioned and acks.
//
// A failure undoes what was done, in reverse and GitHub first: the
// registration, then the instance (a runner that took a job meanwhile is
// kept, and the provisioning counts as done), the record, the slot; the
// claim goes back to waiting and the message is naked with backoff,
// doubling with the claim's provisioning attempts (not its deliveries:
// waits for capacity are no failures), up to a minute; a rate limit waits
// out GitHub's Retry-After. A message that can never be
// processed (not JSON, unknown version or pool) is terminated with a
// reason, logged and counted.
//
// Reads are direct gets, which a replicated bucket's follower may answer
// before it applied a write; where a stale answer would drop work — a
// fence that finds its own slot or claim gone — the stream's leader
// confirms it (bus.LeaderReads).
//
// A claimant that dies, or is paused or cut off, mid-way leaves its claim
// "claimed". Each replica keeps a liveness key in BucketAlive (TTL
// LivenessTTL, 5s by default, renewed every second), and a claim whose
// claimant's key is gone — or, for claims written before liveness, whose
// deadline passed (every step of a provisioning is bounded by it) — is
// taken over by compare-and-set: by the next delivery of the job, and by
// the leader, which reconciles as soon as a key vanishes. The taker adopts
// the claimant's instance when that exists, and otherwise cleans up after
// it and provisions afresh. A claimant that wakes up is fenced out: right
// before its JIT registration and its instance create it re-checks, by
// compare-and-set on its slot and its claim, that both still name its
// runner, and undoes otherwise; when only the slot is lost and the claim
// is still its own, nobody took over, and the job is retried as after a
// failure. The window that remains — a pause inside
// the create call itself — and how it is closed are described in
// liveness.go: the claimant's own check when it marks the claim
// provisioned, and the reconciler's removal of any job-bound instance
// whose job's claim names another runner. So two job-bound runners for
// one job never outlast one create call and one reconcile pass.
//
// in_progress and completed events move the runner's record forward
// (observing ephemera_job_wait_seconds once per runner) and mark the job's
// claim. Events name whichever runner took the job, another self-hosted
// runner with matching labels too: only names ephemera makes
// (eph-<pool>-<8 of [a-z0-9]>) are looked up, so a foreign name that is
// no valid KV key cannot make a message fail forever.
//
// # Late deliveries and replays
//
// A completed event records the job in BucketDone (TTL [MaxJobAge], 35
// days: GitHub cancels any run older than that) and on its claim, created
// as a tombstone when none of the job's queued deliveries had been handled
// yet. What decides a queued delivery handled after that is when the
// webhook receiver stored it (Event.ReceivedAt):
//
//   - received after the completion was recorded — a late redelivery of a
//     failed delivery, a captured signed body replayed under a fresh
//     delivery id — it creates no runner and opens no claim (also after
//     the claim's JobClaimTTL, from BucketDone), and a queued body whose
//     job is older than MaxJobAge is ignored outright. Each is acked,
//     logged and counted as ephemera_jobs_total{action="ignored_completed"}
//     or {action="ignored_stale"}. The runner such a job took (an idle
//     one, or the one another job's delivery created) is replaced by the
//     reconciler: the idle top-up, and the re-serving of jobs whose runner
//     came and went.
//   - received before and handled after — a backlog in the stream, a retry
//     while the pool was full — the job took another job's or a buffer
//     runner and is owed one: it gets its runner, and its claim stays
//     completed, never open.
//
// A job cancelled before any runner took it needs none. Remembering
// completed jobs costs about 100 bytes a job on disk (measured by
// BenchmarkCompletedJobMemory): 33 MiB per replica at 10,000 jobs a day.
//
// # Reconciler
//
// One replica at a time reconciles: the holder of the lease key in
// BucketLeader (TTL 3 × interval, renewed by compare-and-set every
// interval/2 on its own goroutine, deleted on shutdown). Every interval,
// and at once when a replica's liveness key vanishes, it reads the world
// — KV, then GitHub's runner list (once, paginated by 100; every other
// pass, or when KV shows a decision only it can settle: listing.go),
// then the provisioner's instances, then the live replicas — and plans
// the pass
// as a pure function of that reading and the clock (plan.go: planner.plan
// → []action, unit-tested case by case), then applies the plan
// (reconcile.go), re-checking just before acting what may have changed
// since the reading. Per pool, the plan:
//
//   - adopts instances KV does not know (and gives them a slot);
//   - removes job-bound instances whose job's claim names another runner
//     (superseded), GitHub first;
//   - deletes finished instances (stopped, error), and instances whose
//     runner never came online within bootstrap_timeout — the
//     registration first (GitHub's 422 means busy: leave it);
//   - removes GitHub registrations named eph-<pool>-… that have no
//     instance and are not being provisioned;
//   - releases the slots of instances that are gone, and of provisionings
//     whose replica is gone (the same planSlots serves the sweep a full
//     pool asks for);
//   - trims idle runners above min_idle that have been idle longer than
//     idle_grace, longest idle first: unregister on GitHub first, and
//     delete the instance only when GitHub accepted;
//   - keeps the one-time policy token of each idle runner valid: once
//     less than half of its TTL is left, extends it (extend_token, a KV
//     write, no GitHub call; the record names the token by its ID, never
//     the token); a busy runner's token is never extended. An idle runner
//     older than MaxRunnerAge, or whose token cannot be extended (found
//     consumed or expired, or a record that names none), is replaced
//     instead: unregistered on GitHub first, then deleted, and topped up;
//   - tops the idle buffer up to min_idle, never past max; for a pool
//     with min_idle: auto, to the buffer SizeIdle sized from the pool's
//     arrivals of the last half hour and of the last day and measured
//     queued → online times (autoidle.go);
//   - for jobs whose runner came and went while the job, as far as the
//     scaler knows, never started, and for displaced jobs (another job
//     took their runner) a pool has no spare runner for, idle or coming,
//     reads the job on GitHub (at most 20 a pass) and provisions again
//     when it is still queued (plan.go says how spares are counted);
//   - redelivers failed workflow_job webhooks through the App's delivery
//     log, from a cursor in BucketMeta, each at most once (GitHub never
//     retries a failed delivery);
//   - writes the pool's counts for [ReadStatus] and the ephemera_runners
//     gauges (on passes that read the runner list: without it, idle and
//     booting runners cannot be told apart).
//
// After the pass, once a day, the leader compares the runner version each
// pool's image pins ([ImageVersions]) with the newest GitHub lists
// ([RunnerReleases]) and records both for [ReadStatus] and
// [StatusCollector], warning about outdated pools (versions.go).
//
// Every action is logged with its reason and counted in
// ephemera_reconcile_actions_total{pool,action}.
//
// # GitHub requests
//
// At steady state a job costs one JIT registration; reconciles add one
// runner list every other interval (every interval while KV shows a
// runner or job only the list can settle: see listing.go for the bound)
// and one delivery-log page every fourth interval (every interval while
// a failed delivery is unresolved: see deliveries.go for the bound),
// whatever the number of jobs, and job reads only for jobs that look
// stuck. BenchmarkGitHubSpendPerJob counts
// them in one fixed scenario. Removals happen
// only for surplus or broken runners (GitHub removes an ephemeral runner
// after its job itself). Every request is admitted by the GitHub budget
// that all replicas and the policy service share (internal/ghbudget,
// below the GitHub implementation): the scaler only says, on each call's
// context, what it is for — a waiting job's registration first, then a
// buffer runner's (TopUp), then reads (Listing), then removals and
// redeliveries (Cleanup).
package scaler
