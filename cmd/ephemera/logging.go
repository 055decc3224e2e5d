package main

import (
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
)

// newLogger builds the root logger; it is built here only and passed down
// in every component's Config.
func newLogger(cf commonFlags, w io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(cf.logLevel)
	if err != nil || cf.logLevel == "" {
		return zerolog.Nop(), usagef("--log-level must be debug, info, warn or error, got %q", cf.logLevel)
	}
	switch cf.logFormat {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: !isTerminal(w)}
	default:
		return zerolog.Nop(), usagef("--log-format must be json or console, got %q", cf.logFormat)
	}
	zerolog.DurationFieldUnit = time.Millisecond
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
