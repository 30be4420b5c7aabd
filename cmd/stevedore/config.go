package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go/logging"
)

// flags wraps a FlagSet so every flag also reads STEVEDORE_<NAME> from the
// environment (flag > env > default).
type flags struct {
	*flag.FlagSet
	envErr   error
	required []string
}

func newFlags(name string) *flags {
	f := &flags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError)}
	f.FlagSet.SetOutput(helpOutput)
	f.FlagSet.Usage = func() { printUsage(f.Output(), f) }
	return f
}

// Need defines a string flag the command cannot run without: parse refuses
// the command (exit 2) before it connects to anything when it is empty.
func (f *flags) Need(name, usage string) *string {
	f.required = append(f.required, name)
	return f.FlagSet.String(name, "", usage+" (required)")
}

func envName(name string) string {
	return "STEVEDORE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func (f *flags) String(name, def, usage string) *string {
	v, fromEnv := os.LookupEnv(envName(name))
	if fromEnv {
		def = v
	}
	p := f.FlagSet.String(name, def, usage+" (env "+envName(name)+")")
	if fromEnv {
		// The default -h and every flag error print: never a secret the
		// environment carries (a NATS URL's user and password).
		f.Lookup(name).DefValue = withoutUserinfo(v)
	}
	return p
}

// withoutUserinfo is v with the user and password of any URL in it (a
// comma-separated list) redacted; anything else is kept as it is.
func withoutUserinfo(v string) string {
	if !strings.Contains(v, "@") {
		return v
	}
	return redactURL(v)
}

func (f *flags) Int(name string, def int, usage string) *int {
	if v, ok := os.LookupEnv(envName(name)); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			f.envErr = fmt.Errorf("%s=%q: %w", envName(name), v, err)
		}
		def = n
	}
	return f.FlagSet.Int(name, def, usage+" (env "+envName(name)+")")
}

func (f *flags) Bool(name string, def bool, usage string) *bool {
	if v, ok := os.LookupEnv(envName(name)); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			f.envErr = fmt.Errorf("%s=%q: %w", envName(name), v, err)
		}
		def = b
	}
	return f.FlagSet.Bool(name, def, usage+" (env "+envName(name)+")")
}

func (f *flags) Duration(name string, def time.Duration, usage string) *time.Duration {
	if v, ok := os.LookupEnv(envName(name)); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.envErr = fmt.Errorf("%s=%q: %w", envName(name), v, err)
		}
		def = d
	}
	return f.FlagSet.Duration(name, def, usage+" (env "+envName(name)+")")
}

// parse parses args; a flag error, or a bad value in the environment, is a
// usage error (exit 2).
func (f *flags) parse(args []string) error {
	if err := f.FlagSet.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError(err)
	}
	if f.envErr != nil {
		return usageError(f.envErr)
	}
	if f.NArg() > 0 { // no command takes arguments: a forgotten -- or a typo
		return usageError(fmt.Errorf("%s: unexpected argument %q (flags come as --name value)", f.Name(), f.Arg(0)))
	}
	for _, name := range f.required {
		if f.Lookup(name).Value.String() == "" {
			return usageError(fmt.Errorf("%s: --%s is required (stevedore %s -h shows every flag)", f.Name(), name, f.Name()))
		}
	}
	return nil
}

// Where logs, command results and -h go; tests capture them.
var (
	logOutput  io.Writer = os.Stderr
	stdout     io.Writer = os.Stdout
	helpOutput io.Writer = os.Stderr
)

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// sdkLogger sends the AWS SDK's own log lines (retry and checksum warnings)
// to the process's JSON log instead of a plain-text line on stderr.
type sdkLogger struct{ log *slog.Logger }

func (l sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	level := slog.LevelInfo
	if c == logging.Warn {
		level = slog.LevelWarn
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, v...), "component", "aws-sdk")
}

// loadAWSConfig is the SDK's default configuration, logging through log.
func loadAWSConfig(ctx context.Context, log *slog.Logger) (aws.Config, error) {
	return config.LoadDefaultConfig(ctx, config.WithLogger(sdkLogger{log}))
}

// newLogger logs at level (debug, info, warn, error) in format: "json"
// (one object per line, for collectors) or "text" (key=value, for people).
// Durations read as durations in both ("took":"566ms", not 566000000).
func newLogger(level, format string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: l, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Value.Kind() == slog.KindDuration {
			return slog.String(a.Key, a.Value.Duration().String())
		}
		return a
	}}
	if format == "text" {
		return slog.New(slog.NewTextHandler(logOutput, opts))
	}
	return slog.New(slog.NewJSONHandler(logOutput, opts))
}
