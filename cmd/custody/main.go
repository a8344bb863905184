// Command custody is the one Custody binary: `custody server` runs the
// server, and every other command is the az-compatible CLI.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"custody/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
