package cli

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"custody/node"
)

// nodeCmd is `custody node`: run a node agent by hand (the server starts
// local ones itself).
func nodeCmd() *cobra.Command {
	var cfg node.AgentConfig
	var credFile, caFile, logLevel string
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run a node agent: join a pool over HTTPS and run its tasks as local processes",
		Long: "Run a node agent. The credential comes from --credential-file or the environment variable\n" +
			"CUSTODY_NODE_CREDENTIAL; it names the account, pool and node. Tasks run under --root.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: use debug, info, warn or error", logLevel)
			}
			cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			cfg.Credential = os.Getenv("CUSTODY_NODE_CREDENTIAL")
			if credFile != "" {
				b, err := os.ReadFile(credFile)
				if err != nil {
					return fmt.Errorf("--credential-file: %w", err)
				}
				cfg.Credential = strings.TrimSpace(string(b))
			}
			if cfg.Credential == "" {
				return errors.New("no node credential: use --credential-file or set CUSTODY_NODE_CREDENTIAL")
			}
			_ = os.Unsetenv("CUSTODY_NODE_CREDENTIAL")
			if caFile != "" {
				pem, err := os.ReadFile(caFile)
				if err != nil {
					return fmt.Errorf("--ca-file: %w", err)
				}
				cfg.CAPool = x509.NewCertPool()
				if !cfg.CAPool.AppendCertsFromPEM(pem) {
					return fmt.Errorf("--ca-file %s holds no PEM certificate", caFile)
				}
			}
			a, err := node.NewAgent(cfg)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Server, "server", "", "the server's node channel, https://batch.{domain}:{port}")
	f.StringVar(&cfg.Connect, "connect", "", "host:port to dial for the server (default: resolve the --server host)")
	f.StringVar(&credFile, "credential-file", "", "file holding the node credential (default: env CUSTODY_NODE_CREDENTIAL)")
	f.StringVar(&caFile, "ca-file", "", "PEM file of the CA that signed the server's certificate")
	f.StringVar(&cfg.Root, "root", "", "the node's root directory (tasks run in {root}/workitems/...)")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:0", "loopback address for the managed identity endpoint")
	f.StringVar(&logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	return cmd
}
