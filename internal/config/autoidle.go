package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MinIdleValue is pools[].min_idle as written: a whole number, or "auto"
// (the scaler's leader sizes the buffer, within idle_min and idle_max, so
// that jobs wait at most target_wait at the percentile it names). Parse
// copies it into Pool.MinIdle and Pool.AutoIdle.
type MinIdleValue struct {
	N    int
	Auto bool
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *MinIdleValue) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "auto" {
		*m = MinIdleValue{Auto: true}
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("expected a whole number or auto, got %q", s)
	}
	*m = MinIdleValue{N: n}
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (m MinIdleValue) MarshalText() ([]byte, error) {
	if m.Auto {
		return []byte("auto"), nil
	}
	return []byte(strconv.Itoa(m.N)), nil
}

// TargetWait is pools[].target_wait: the longest a job should wait for a
// runner, at a percentile of jobs, written as one key, `{p95: 5s}`
// (p50 to p99.9).
type TargetWait struct {
	// Quantile is the percentile as a fraction: p95 is 0.95.
	Quantile float64
	Wait     Duration
}

// IsZero reports whether target_wait was not set.
func (t TargetWait) IsZero() bool { return t.Quantile == 0 }

// String writes it back as YAML would: "p95: 5s".
func (t TargetWait) String() string {
	return "p" + strconv.FormatFloat(t.Quantile*100, 'f', -1, 64) + ": " + t.Wait.D().String()
}

// unmarshalNode implements nodeUnmarshaler: one key pNN with a duration.
func (t *TargetWait) unmarshalNode(n *yaml.Node, path string) error {
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
		return keyErr(path, "expected one percentile and its wait, such as {p95: 5s}")
	}
	key, val := n.Content[0], n.Content[1]
	q, ok := parsePercentile(key.Value)
	if !ok {
		return keyErr(join(path, key.Value), fmt.Sprintf("unknown key (line %d): expected a percentile from p50 to p99.9, such as p95", key.Line))
	}
	var d Duration
	if val.Kind != yaml.ScalarNode {
		return keyErr(join(path, key.Value), "expected a duration such as 5s")
	}
	if err := d.UnmarshalText([]byte(val.Value)); err != nil {
		return keyErr(join(path, key.Value), err.Error())
	}
	*t = TargetWait{Quantile: q, Wait: d}
	return nil
}

// parsePercentile reads "p95" or "p99.9" as 0.95 or 0.999; it accepts
// p50 to p99.9.
func parsePercentile(s string) (float64, bool) {
	num, ok := strings.CutPrefix(s, "p")
	if !ok || num == "" || strings.ContainsAny(num, "+-eE") {
		return 0, false
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 50 || v > 99.9 {
		return 0, false
	}
	return math.Round(v*1e4) / 1e6, true
}

// validateAutoIdle checks idle_min, idle_max and target_wait of pool i:
// required together with min_idle: auto, refused without it.
func validateAutoIdle(i int, p Pool) error {
	k := func(key string) string { return fmt.Sprintf("pools[%d].%s", i, key) }
	if !p.AutoIdle {
		switch {
		case p.IdleMin != 0:
			return keyErr(k("idle_min"), "only with min_idle: auto")
		case p.IdleMax != 0:
			return keyErr(k("idle_max"), "only with min_idle: auto")
		case !p.TargetWait.IsZero():
			return keyErr(k("target_wait"), "only with min_idle: auto")
		}
		return nil
	}
	switch {
	case p.IdleMin < 0:
		return keyErr(k("idle_min"), "must not be negative")
	case p.IdleMax < 1:
		return keyErr(k("idle_max"), "required with min_idle: auto, at least 1")
	case p.IdleMin > p.IdleMax:
		return keyErr(k("idle_min"), fmt.Sprintf("must not exceed idle_max (%d)", p.IdleMax))
	case p.IdleMax > p.Max:
		return keyErr(k("idle_max"), fmt.Sprintf("must not exceed max (%d)", p.Max))
	case p.TargetWait.IsZero():
		return keyErr(k("target_wait"), "required with min_idle: auto, as a percentile and a wait, such as {p95: 5s}")
	}
	return nil
}
