// Package cli holds the conventions ephemera's commands (ephemera,
// ephemera-demo) share: exit statuses, usage errors, flag parsing and the
// root logger.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/ephemera-ci/ephemera/internal/config"
)

// Exit statuses.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// UsageError is bad usage or configuration: exit status 2.
type UsageError struct{ msg string }

func (e *UsageError) Error() string { return e.msg }

// Usagef is a UsageError with a formatted message.
func Usagef(format string, args ...any) error {
	return &UsageError{msg: fmt.Sprintf(format, args...)}
}

// ParseFlags parses args into fs; a bad flag or a stray argument is a
// UsageError, -h is flag.ErrHelp.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return Usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return Usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// ExitStatus maps a command's error to its exit status and prints it on
// stderr as one line prefixed by prog: 0 for none or -h; 2 for a
// UsageError or a configuration key's error; 1 for anything else.
func ExitStatus(prog string, err error, stderr io.Writer) int {
	var ue *UsageError
	var ke *config.KeyError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, prog+": "+ue.msg)
		return ExitUsage
	case errors.As(err, &ke):
		fmt.Fprintln(stderr, prog+": config: "+ke.Error())
		return ExitUsage
	default:
		fmt.Fprintln(stderr, prog+": "+oneLine(err.Error()))
		return ExitFailure
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
