package cli

import (
	"flag"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
)

// LogFlags are the --log-level and --log-format flags.
type LogFlags struct {
	Level  string
	Format string
}

// Register adds the flags to fs, with their defaults.
func (lf *LogFlags) Register(fs *flag.FlagSet) {
	fs.StringVar(&lf.Level, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&lf.Format, "log-format", "json", "log format: json or console")
}

// NewLogger builds a command's root logger, writing to w; it is built in
// cmd/ only and passed down in every component's Config. A bad level or
// format is a UsageError.
func NewLogger(lf LogFlags, w io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(lf.Level)
	if err != nil || lf.Level == "" {
		return zerolog.Nop(), Usagef("--log-level must be debug, info, warn or error, got %q", lf.Level)
	}
	switch lf.Format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: !IsTerminal(w)}
	default:
		return zerolog.Nop(), Usagef("--log-format must be json or console, got %q", lf.Format)
	}
	zerolog.DurationFieldUnit = time.Millisecond
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
