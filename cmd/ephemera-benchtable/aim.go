package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// aim is a bound a figure should keep: "≤ 1.10", "< 20 ms", "≥ 5,000/s",
// "≥ 90%". The unit after the number is the figure's own and is not
// converted; it is there for the reader.
type aim struct {
	op    string // <, ≤, >, ≥
	bound float64
}

var aimText = regexp.MustCompile(`^\s*(<=|>=|<|>|≤|≥)\s*([0-9][0-9,]*(?:\.[0-9]+)?)\s*(\S.*)?$`)

// parseAim reads an aim; anything but a comparison and a number (thousands
// may be separated by commas), then an optional unit, is an error.
func parseAim(s string) (aim, error) {
	m := aimText.FindStringSubmatch(s)
	if m == nil {
		return aim{}, fmt.Errorf("aim %q is not a comparison (<, ≤, >, ≥) and a number", s)
	}
	v, err := strconv.ParseFloat(strings.ReplaceAll(m[2], ",", ""), 64)
	if err != nil {
		return aim{}, fmt.Errorf("aim %q: %w", s, err)
	}
	op := m[1]
	switch op {
	case "<=":
		op = "≤"
	case ">=":
		op = "≥"
	}
	return aim{op: op, bound: v}, nil
}

// met reports whether v keeps the aim. The bound is compared as written:
// 1.103 misses ≤ 1.10.
func (a aim) met(v float64) bool {
	switch a.op {
	case "<":
		return v < a.bound
	case "≤":
		return v <= a.bound
	case ">":
		return v > a.bound
	default: // ≥
		return v >= a.bound
	}
}
