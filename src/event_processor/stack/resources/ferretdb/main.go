// Command ferretdb-embedded runs FerretDB (a MongoDB wire-protocol server) with
// its PostgreSQL (default) or SQLite backend on a loopback address until SIGTERM or SIGINT.
//
// It wraps the embeddable package because `go install .../cmd/ferretdb` builds a
// binary that panics at start (missing build/version/version.txt).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	handler := flag.String("handler", "postgresql", "backend: postgresql or sqlite")
	pgURL := flag.String("postgresql-url", "", "PostgreSQL URL for the postgresql backend")
	dataDir := flag.String("data-dir", "", "directory for the SQLite databases (sqlite backend)")
	logLevel := flag.String("log-level", "warn", "log level: debug, info, warn, error")
	flag.Parse()

	url := ""
	switch *handler {
	case "postgresql":
		if *pgURL == "" {
			fmt.Fprintln(os.Stderr, "ferretdb-embedded: --postgresql-url is required")
			os.Exit(2)
		}
	case "sqlite":
		if *dataDir == "" {
			fmt.Fprintln(os.Stderr, "ferretdb-embedded: --data-dir is required")
			os.Exit(2)
		}
		url = "file:" + *dataDir
		if url[len(url)-1] != '/' {
			url += "/"
		}
	default:
		fmt.Fprintln(os.Stderr, "ferretdb-embedded: unknown --handler", *handler)
		os.Exit(2)
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb-embedded: bad --log-level:", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:      ferretdb.ListenerConfig{TCP: *listen},
		Handler:       *handler,
		SQLiteURL:     url,
		PostgreSQLURL: *pgURL,
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb-embedded:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "ferretdb-embedded: listening on", *listen)
	f.Run(ctx)
}
