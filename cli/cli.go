// Package cli is Custody's command line: `custody server` and an
// az-compatible command tree that talks to a server over its HTTPS APIs.
//
// The az-compatible commands (login, account, group, identity, ad sp, role,
// env) take az's names and flags and az's global flags (-o/--output,
// --query, --debug, --subscription), plus --data-dir, the server's data
// directory: the CLI reads server.json there to find the server and trust its
// CA, and signs in with cli-profile.json (written by `custody login`) or,
// without one, the bootstrap admin credentials in admin.json. Errors print
// as az prints them: "ERROR: (Code) message" and exit status 1.
package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

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
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	a.addGlobalFlags(root)
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error { return a.prepare(cmd) }
	root.AddCommand(newServerCmd(), nodeCmd(),
		a.loginCmd(), a.logoutCmd(), a.accountCmd(),
		a.groupCmd(), a.identityCmd(), a.adCmd(), a.roleCmd(), a.envCmd(),
		a.batchCmd(), a.keyvaultCmd(), a.portalCmd(), a.rootKeyCmd())
	return root
}

func newServerCmd() *cobra.Command {
	cfg := server.DefaultConfig()
	var logLevel, logFormat, diskLimit string
	var resolve []string
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
			if diskLimit != "" {
				n, err := parseSize(diskLimit)
				if err != nil {
					return fmt.Errorf("--task-disk-limit %q: %v", diskLimit, err)
				}
				cfg.TaskDiskLimit = n
			}
			for _, r := range resolve {
				from, to, err := server.ParseResolve(r)
				if err != nil {
					return err
				}
				if cfg.Resolve == nil {
					cfg.Resolve = map[string]string{}
				}
				cfg.Resolve[from] = to
			}
			if cfg.PublicURL != "" {
				domain, _, err := server.ParsePublicURL(cfg.PublicURL)
				if err != nil {
					return err
				}
				if cmd.Flags().Changed("domain") && !strings.EqualFold(cfg.Domain, domain) {
					return fmt.Errorf("--domain %s and --public-url %s disagree: the public URL's host is the domain; give one of them", cfg.Domain, cfg.PublicURL)
				}
			}
			s, err := server.Open(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer s.Close()
			cfg.Domain = s.Endpoint.Domain
			for _, w := range s.Warnings() {
				fmt.Fprintf(cmd.ErrOrStderr(), "WARNING: %s.\n", w)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Custody is running at https://management.%s:%d (login: https://login.%s:%d).\n", cfg.Domain, s.Port(), cfg.Domain, s.Port())
			fmt.Fprintf(cmd.ErrOrStderr(), "Admin credentials: %s (mode 0600). CA certificate: %s.\n", s.DataDir()+string(os.PathSeparator)+server.AdminFile, s.Endpoint.CAFile)
			fmt.Fprintln(cmd.ErrOrStderr(), "In another terminal: custody group list, or eval \"$(custody env)\" for Azure SDK programs.")
			portalURL := publicURLOf("portal", cfg.Domain, s.Port())
			// The sign-in link is a credential until used: it goes only to a
			// terminal, never to a file or pipe that may end up in a log.
			if out := cmd.OutOrStdout(); isTerminal(out) {
				if link, err := s.PortalSignInLink(); err == nil {
					fmt.Fprintf(out, "Portal: %s (sign in as the admin, once, within 15 minutes: %s; `custody portal` prints a new link).\n", portalURL, link)
				}
			} else {
				fmt.Fprintf(cmd.ErrOrStderr(), "Portal: %s (run `custody portal` for a one-time admin sign-in link).\n", portalURL)
			}
			if a := s.MetricsAddr(); a != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "Metrics: http://%s/metrics\n", a)
			}
			if a := s.PprofAddr(); a != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "Profiles: http://%s/debug/pprof/\n", a)
			}
			return s.Serve(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", cfg.Listen, "TCP address of the TLS listener")
	f.StringVar(&cfg.Domain, "domain", cfg.Domain, "DNS suffix the services are routed by (login.{domain}, management.{domain}, {vault}.vault.{domain}, ...)")
	f.StringVar(&cfg.AdvertiseAddress, "advertise-address", "", "host:port the other replicas of a PostgreSQL cluster reach this one at, to forward requests to it while it is the active (default: the --listen address, with this machine's host name for 0.0.0.0 or [::])")
	f.StringVar(&cfg.PublicURL, "public-url", "", "the cluster's one address, https://{domain}[:port]: its host is the domain and its port the one in every URL the server hands out (token issuers, key identifiers, account endpoints, portal and node links), whatever --listen says; replicas of one cluster share it")
	f.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for the CA, root key, admin credentials and the SQLite database (env CUSTODY_DATA_DIR)")
	f.StringVar(&cfg.Database, "database", cfg.Database, "postgres://... URL to use PostgreSQL instead of the embedded SQLite database")
	f.StringVar(&cfg.RootKey, "root-key", "", "the root key: a PKCS#11 URI (pkcs11:token=LABEL;object=LABEL?module-path=LIB&pin-source=FILE; the key stays in the token, made by `custody root-key init`, and RSA-HSM/EC-HSM vault keys live there too) or a file holding it (base64, 32 bytes); default: env CUSTODY_ROOT_KEY, else {data-dir}/root.key")
	f.StringVar(&cfg.RootKeyFile, "root-key-file", "", "file holding the root key (base64, 32 bytes); the same as --root-key FILE")
	f.DurationVar(&cfg.KeyProbeInterval, "key-probe-interval", 5*time.Second, "how often each customer-managed key is probed; a refused key locks its account, a restored one unlocks it")
	f.Float64Var(&cfg.KeyProbeRate, "key-probe-rate", 20, "most periodic key probes a second; with more keys and identities than fit, each is probed every (groups / rate) seconds instead (changes the vaults publish are acted on at once)")
	f.IntVar(&cfg.ReencryptBatch, "reencrypt-batch", 500, "how many records a batch account's re-encryption re-seals in one short transaction")
	f.DurationVar(&cfg.KeyGracePeriod, "key-grace-period", time.Minute, "how long a key vault outage (timeouts, 5xx, 429) is ridden out on the cached key before the account locks")
	f.DurationVar(&cfg.KeyVaultSweepInterval, "key-vault-sweep-interval", time.Minute, "how often soft-deleted keys and vaults past retention are purged and due key rotations run")
	f.StringVar(&cfg.MetricsListen, "metrics-listen", "", "TCP address of a plain HTTP listener serving Prometheus /metrics only (e.g. 127.0.0.1:9464); empty serves no metrics")
	f.StringVar(&cfg.PprofListen, "pprof-listen", "", "loopback TCP address of a plain HTTP listener serving Go profiles under /debug/pprof/ only (e.g. 127.0.0.1:6060); empty serves none")
	f.DurationVar(&cfg.AuditRetention, "audit-retention", server.DefaultAuditRetention, "how long key vault audit records are kept (deleted by the key vault sweep); 0 keeps them for ever")
	f.DurationVar(&cfg.ReadTimeout, "read-timeout", server.DefaultReadTimeout, "time a client has to send a whole request, headers and body; slower ones are cut off")
	f.DurationVar(&cfg.SigningKeyMaxAge, "signing-key-max-age", 30*24*time.Hour, "age at which the token signing key is rotated (older keys stay published until their tokens expire)")
	f.StringArrayVar(&cfg.ExternalVaultHosts, "external-vault-host", nil, "a vault host outside this server that customer-managed key identifiers may name: host, host:port, or *.suffix for one label (e.g. *.vault.azure.net); repeat for more (by default only this server's vaults). Each needs a credential in --external-vault-credentials")
	f.StringVar(&cfg.ExternalVaultCredentialsFile, "external-vault-credentials", "", "JSON file of the credentials that sign in to external vaults' tenants: {\"credentials\": [{\"hosts\", \"authority\", \"tenantId\", \"clientId\", and \"clientSecret\" or \"clientSecretFile\" or \"federation\": {\"subject\", \"audience\"}}]}")
	f.StringVar(&cfg.ExternalCAFile, "external-ca-file", "", "PEM bundle of the only CAs trusted for external vaults, their token services and federated issuers (default: the system roots)")
	f.StringArrayVar(&resolve, "resolve", nil, "host:port:address: connect to address for host:port on connections to external vaults, token services and federated issuers, as curl --resolve does (TLS still verifies host); repeatable")
	f.BoolVar(&cfg.DisableLocalNodes, "disable-local-nodes", false, "do not start pool nodes as local `custody node` processes; agents on other machines join with node credentials instead")
	f.StringVar(&cfg.NodeRoot, "node-root", "", "directory of local nodes' files, one per node (default: {data-dir}-nodes, beside the data directory; never inside it)")
	f.BoolVar(&cfg.UnsafeSharedHostNodes, "unsafe-shared-host-nodes", false, "run local nodes' tasks WITHOUT a sandbox, as the server's user, where the host cannot build one: tasks can then read the server's secrets")
	f.StringVar(&diskLimit, "task-disk-limit", "", "cap on each task's disk budget (bytes, or with K, M, G suffix), below the temporary disk of its pool's vmSize")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	return cmd
}

// parseSize reads a byte count: digits with an optional K, M, G or T
// suffix (powers of 1024; "KiB", "MB" and the like are read the same way).
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult, t = 1<<10, t[:n-1]
		case 'M':
			mult, t = 1<<20, t[:n-1]
		case 'G':
			mult, t = 1<<30, t[:n-1]
		case 'T':
			mult, t = 1<<40, t[:n-1]
		}
	}
	v, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || v <= 0 || v > (1<<62)/mult {
		return 0, errors.New("give a positive size in bytes, such as 1073741824 or 1G")
	}
	return v * mult, nil
}

// app holds the global flags and the lazily built server client of one CLI
// invocation.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	output       string
	query        string
	debug        bool
	dataDir      string
	subscription string

	printer printer
	c       *client
}

func (a *app) addGlobalFlags(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVarP(&a.output, "output", "o", "json", "output format: "+strings.Join(outputFormats, ", "))
	f.StringVar(&a.query, "query", "", "JMESPath query string, applied to the result (see http://jmespath.org)")
	f.BoolVar(&a.debug, "debug", false, "log each HTTP request (method, URL, status) to stderr")
	f.StringVar(&a.dataDir, "data-dir", "", "the server's data directory (default: env CUSTODY_DATA_DIR, else ~/.custody)")
	f.StringVar(&a.subscription, "subscription", "", "subscription id or name (default: the signed-in profile's)")
}

// prepare checks the global flags before any command runs, so bad ones
// change nothing.
func (a *app) prepare(cmd *cobra.Command) error {
	if !slices.Contains(outputFormats, a.output) {
		return fmt.Errorf("argument --output/-o: invalid choice: '%s' (choose from %s)", a.output, "'"+strings.Join(outputFormats, "', '")+"'")
	}
	if err := checkQuery(a.query); err != nil {
		return err
	}
	if a.dataDir == "" {
		a.dataDir = server.DefaultDataDir()
	}
	if abs, err := filepath.Abs(a.dataDir); err == nil {
		a.dataDir = abs
	}
	_, noColor := os.LookupEnv("NO_COLOR")
	a.printer = printer{format: a.output, query: a.query, color: a.output == "jsonc" && !noColor && isTerminal(a.stdout)}
	return nil
}

// print writes a command's result with the global output flags.
func (a *app) print(v any, table func(any) any) error {
	return a.printer.print(a.stdout, v, table)
}

// warn prints an az-style warning to stderr.
func (a *app) warn(format string, args ...any) {
	fmt.Fprintf(a.stderr, "WARNING: "+format+"\n", args...)
}

// client returns the server client, signed in with the profile or the
// admin credentials, for the subscription chosen by --subscription.
func (a *app) client(ctx context.Context) (*client, error) {
	if a.c != nil {
		return a.c, nil
	}
	cred, err := a.credentials()
	if err != nil {
		return nil, err
	}
	c, err := newClient(a.dataDir, cred, a.debugLog())
	if err != nil {
		return nil, err
	}
	if a.subscription != "" {
		id, err := c.resolveSubscription(ctx, a.subscription)
		if err != nil {
			return nil, err
		}
		c.cred.SubscriptionID = id
	}
	a.c = c
	return c, nil
}

// debugLog is where --debug writes the request log, or nil.
func (a *app) debugLog() io.Writer {
	if a.debug {
		return a.stderr
	}
	return nil
}

// confirm asks the az question on stdin unless yes is set.
func (a *app) confirm(yes bool) error {
	if yes {
		return nil
	}
	fmt.Fprint(a.stderr, "Are you sure you want to perform this operation? (y/n): ")
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && strings.TrimSpace(line) == "" {
		fmt.Fprintln(a.stderr)
		return errors.New("unable to prompt for confirmation as no tty available. Use --yes.")
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errors.New("operation cancelled.")
}

func publicURLOf(name, domain string, port int) string {
	if port == 443 {
		return "https://" + name + "." + domain
	}
	return fmt.Sprintf("https://%s.%s:%d", name, domain, port)
}
