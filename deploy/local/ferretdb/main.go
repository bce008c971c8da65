// Command ferretdb runs the FerretDB v1 MongoDB-wire server on SQLite for kefu's local stack.
//
// It embeds github.com/FerretDB/FerretDB/ferretdb instead of using `go install` of FerretDB's own
// command: that binary panics at start-up when it is built outside FerretDB's repository
// (its build/version/version.txt is generated there and absent from the module zip).
// Embedded mode keeps telemetry off and stores its state in memory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

const ferretdbModule = "github.com/FerretDB/FerretDB"

// ferretdbVersion reads the FerretDB module version compiled into this binary from go.mod.
func ferretdbVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path == ferretdbModule {
			if dep.Replace != nil {
				// setup.sh builds a patched copy of the module (deploy/local/ferretdb/patches)
				return dep.Version + "+kefu-patches"
			}
			return dep.Version
		}
	}
	return "unknown"
}

func parseLevel(name string) (slog.Level, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(name)); err != nil {
		return level, fmt.Errorf("--log-level=%q: expected debug, info, warn or error", name)
	}
	return level, nil
}

func run() error {
	listenAddr := flag.String("listen-addr", "127.0.0.1:27117", "TCP host:port to listen on")
	sqliteDir := flag.String("sqlite-dir", ".kefu/data/ferretdb", "directory of the SQLite databases (created if missing)")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	showVersion := flag.Bool("version", false, "print the FerretDB version and exit")
	flag.Parse()

	if *showVersion {
		fmt.Printf("ferretdb %s (embedded, sqlite)\n", ferretdbVersion())
		return nil
	}
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; run with -h for the flags", flag.Args())
	}
	if _, _, err := net.SplitHostPort(*listenAddr); err != nil {
		return fmt.Errorf("--listen-addr=%q: expected host:port (%w)", *listenAddr, err)
	}
	level, err := parseLevel(*logLevel)
	if err != nil {
		return err
	}

	dir, err := filepath.Abs(*sqliteDir)
	if err != nil {
		return fmt.Errorf("--sqlite-dir=%q: %w", *sqliteDir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cannot create --sqlite-dir %q: %w", dir, err)
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	// The SQLite backend wants a file: URI naming an existing directory, with a trailing slash.
	sqliteURL := "file:" + strings.TrimSuffix(dir, "/") + "/"

	fdb, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listenAddr},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
	})
	if err != nil {
		return fmt.Errorf("cannot start FerretDB on %s: %w", *listenAddr, err)
	}

	// SIGTERM (the stack driver's stop) and SIGINT end Run, which closes clients and the backend.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	logger.Info("FerretDB starting",
		slog.String("version", ferretdbVersion()),
		slog.String("listen", *listenAddr),
		slog.String("sqlite", sqliteURL))

	if err := fdb.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	logger.Info("FerretDB stopped")
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb:", err)
		os.Exit(1)
	}
}
