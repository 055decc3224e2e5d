package scaler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ephemera-ci/ephemera/internal/config"
)

// PoolStatus is one pool as `ephemera status` shows it.
type PoolStatus struct {
	Pool string `json:"pool"`
	// MinIdle is the idle buffer: min_idle, or with min_idle: auto
	// (AutoIdle) the one the leader's last pass sized.
	MinIdle  int  `json:"min_idle"`
	AutoIdle bool `json:"auto_idle,omitempty"`
	Max      int  `json:"max"`
	// Idle, Busy, Provisioning and Finishing are as of the reconciler's
	// last pass (UpdatedAt; zero when none ran yet).
	Idle         int `json:"idle"`
	Busy         int `json:"busy"`
	Provisioning int `json:"provisioning"`
	Finishing    int `json:"finishing"`
	// Instances is how many slots are held now: instances that exist or
	// are being created, counted against Max.
	Instances int `json:"instances"`
	// WaitingJobs are queued jobs whose runner has not taken a job yet
	// (waiting for a slot, or for their runner to boot).
	WaitingJobs int `json:"waiting_jobs"`
	// OldestWaitingSeconds is the age of the oldest waiting job, from
	// GitHub's created_at.
	OldestWaitingSeconds float64   `json:"oldest_waiting_seconds"`
	UpdatedAt            time.Time `json:"updated_at,omitzero"`
	// RunnerVersion is the runner version the pool's image pins, and
	// LatestRunnerVersion the newest GitHub lists for download, as of
	// the leader's last check (VersionCheckedAt); empty when unknown.
	// RunnerOutdated says the image's runner is the older: GitHub
	// refuses runners older than its supported minimum.
	RunnerVersion       string    `json:"runner_version,omitempty"`
	LatestRunnerVersion string    `json:"latest_runner_version,omitempty"`
	RunnerOutdated      bool      `json:"runner_outdated,omitempty"`
	VersionCheckedAt    time.Time `json:"version_checked_at,omitzero"`
}

type poolCounts struct {
	Idle         int `json:"idle"`
	Busy         int `json:"busy"`
	Provisioning int `json:"provisioning"`
	Finishing    int `json:"finishing"`
	// MinIdle is the buffer the pass kept: min_idle, or what
	// min_idle: auto sized.
	MinIdle int       `json:"min_idle"`
	At      time.Time `json:"at"`
}

func (s *Scaler) writeStatus(ctx context.Context, pool string, c poolCounts) {
	if _, err := s.kv.meta.Put(ctx, statusKeyPrefix+pool, encode(c)); err != nil {
		s.log.Warn().Err(err).Msg("store pool status")
	}
}

// ReadStatus reads every pool's status from the scaler's KV buckets only;
// it needs no GitHub, no LXD and no running scaler. A bucket that does not
// exist yet reads as empty.
func ReadStatus(ctx context.Context, js jetstream.KeyValueManager, pools []config.Pool) ([]PoolStatus, error) {
	out := make([]PoolStatus, 0, len(pools))
	idx := map[string]int{}
	for i, p := range pools {
		out = append(out, PoolStatus{Pool: p.Name, MinIdle: p.MinIdle, Max: p.Max, AutoIdle: p.AutoIdle})
		if p.AutoIdle {
			out[i].MinIdle = p.IdleMin // until the leader sized it
		}
		idx[p.Name] = i
	}
	open := func(name string) (jetstream.KeyValue, error) {
		kv, err := js.KeyValue(ctx, name)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("status: bucket %s: %w", name, err)
		}
		return kv, nil
	}
	if meta, err := open(BucketMeta); err != nil {
		return nil, err
	} else if meta != nil {
		for i, p := range pools {
			e, err := get[poolCounts](ctx, meta, statusKeyPrefix+p.Name)
			if err != nil {
				return nil, err
			}
			if e.Found {
				c := e.Val
				out[i].Idle, out[i].Busy, out[i].Provisioning, out[i].Finishing, out[i].UpdatedAt = c.Idle, c.Busy, c.Provisioning, c.Finishing, c.At
				if p.AutoIdle {
					out[i].MinIdle = c.MinIdle
				}
			}
		}
		v, err := get[versionCheck](ctx, meta, versionKey)
		if err != nil {
			return nil, err
		}
		for i := range out {
			out[i].RunnerVersion, out[i].LatestRunnerVersion, out[i].VersionCheckedAt = v.Val.Pinned[out[i].Pool], v.Val.Latest, v.Val.CheckedAt
			out[i].RunnerOutdated = RunnerOutdated(out[i].RunnerVersion, out[i].LatestRunnerVersion)
		}
	}
	if slots, err := open(BucketSlots); err != nil {
		return nil, err
	} else if slots != nil {
		all, err := loadAll[string](ctx, slots)
		if err != nil {
			return nil, err
		}
		for k := range all {
			if p, _, ok := parseSlotKey(k); ok {
				if i, ok := idx[p]; ok {
					out[i].Instances++
				}
			}
		}
	}
	if jobsKV, err := open(BucketJobs); err != nil {
		return nil, err
	} else if jobsKV != nil {
		all, err := loadAll[claimRec](ctx, jobsKV)
		if err != nil {
			return nil, err
		}
		oldest := make([]time.Time, len(pools))
		for _, c := range all {
			i, ok := idx[c.Val.Pool]
			if !ok || !c.Val.waiting() || c.Val.NoRunner {
				continue
			}
			out[i].WaitingJobs++
			t := c.Val.JobCreatedAt
			if t.IsZero() {
				t = c.Val.ClaimedAt
			}
			if oldest[i].IsZero() || t.Before(oldest[i]) {
				oldest[i] = t
			}
		}
		for i, t := range oldest {
			if !t.IsZero() {
				out[i].OldestWaitingSeconds = max(0, time.Since(t).Seconds())
			}
		}
	}
	return out, nil
}
