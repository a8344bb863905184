// Package cli is Custody's command line: `custody server` and an
// az-compatible command tree that talks to a server over its HTTPS APIs.
package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"custody/server"
)

// Main runs the CLI with args and returns the process exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRoot(stdin, stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "ERROR: "+err.Error())
		return 1
	}
	return 0
}

func newRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "custody",
		Short:         "Custody: self-hosted batch compute with customer-managed keys",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newServerCmd())
	return root
}

func newServerCmd() *cobra.Command {
	cfg := server.DefaultConfig()
	var logLevel, logFormat string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the Custody server (token service, resource manager, key vault, batch) on one TLS listener",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: use debug, info, warn or error", logLevel)
			}
			opts := &slog.HandlerOptions{Level: level}
			var h slog.Handler = slog.NewTextHandler(cmd.ErrOrStderr(), opts)
			if strings.EqualFold(logFormat, "json") {
				h = slog.NewJSONHandler(cmd.ErrOrStderr(), opts)
			}
			cfg.Logger = slog.New(h)
			slog.SetDefault(cfg.Logger)
			s, err := server.Open(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer s.Close()
			fmt.Fprintf(cmd.ErrOrStderr(), "Custody is running at https://management.%s:%d (login: https://login.%s:%d).\n", cfg.Domain, s.Port(), cfg.Domain, s.Port())
			fmt.Fprintf(cmd.ErrOrStderr(), "Admin credentials: %s (mode 0600). CA certificate: %s.\n", s.DataDir()+string(os.PathSeparator)+server.AdminFile, s.Endpoint.CAFile)
			fmt.Fprintln(cmd.ErrOrStderr(), "In another terminal: custody group list, or eval \"$(custody env)\" for Azure SDK programs.")
			return s.Serve(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", cfg.Listen, "TCP address of the TLS listener")
	f.StringVar(&cfg.Domain, "domain", cfg.Domain, "DNS suffix the services are routed by (login.{domain}, management.{domain}, {vault}.vault.{domain}, ...)")
	f.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for the CA, root key, admin credentials and the SQLite database (env CUSTODY_DATA_DIR)")
	f.StringVar(&cfg.Database, "database", cfg.Database, "postgres://... URL to use PostgreSQL instead of the embedded SQLite database")
	f.StringVar(&cfg.RootKeyFile, "root-key-file", "", "file holding the root key (base64, 32 bytes); default: env CUSTODY_ROOT_KEY, else {data-dir}/root.key")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	return cmd
}
