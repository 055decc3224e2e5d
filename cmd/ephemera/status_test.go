package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ephemera-ci/ephemera/internal/bus/bustest"
	"github.com/ephemera-ci/ephemera/scaler"
)

func TestStatusWarnsWhenAPoolsImagePinsAnOutdatedRunner(t *testing.T) {
	b, srv := bustest.Open(t)
	// What the leader's daily check records (scaler/versions.go).
	kv, err := b.JS.CreateOrUpdateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: scaler.BucketMeta})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "runner_version", []byte(`{"latest":"2.321.0","checked_at":"2026-12-01T00:00:00Z","pinned":{"small":"2.320.0"},"pinned_at":"2026-12-01T00:00:00Z"}`)); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, checkConfig)
	var out, errb bytes.Buffer
	if code := run(t.Context(), []string{"status", "--config", cfg, "--nats", srv.ClientURL()}, &out, &errb); code != 0 {
		t.Fatalf("status: exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"2.320.0 (outdated: 2.321.0)", "warning: pool small: its image pins runner 2.320.0, GitHub lists 2.321.0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status does not say %q:\n%s", want, out.String())
		}
	}
}
