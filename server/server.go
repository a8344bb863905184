// Package server assembles a Custody server from its parts: data directory,
// root key, database, identity and resource manager services, TLS and the
// HTTP API. cmd/custody runs it; tests start one in-process with
// servertest.New.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"custody"
	"custody/batch"
	"custody/compute"
	"custody/httpapi"
	"custody/identity"
	"custody/keyvault"
	"custody/rm"
	"custody/secret"
	"custody/sqlstore"
	"custody/tlsca"
)

// Config configures a server. DefaultConfig gives the values `custody
// server` starts with.
type Config struct {
	// Listen is the TCP address of the one TLS listener.
	Listen string
	// Domain is the DNS suffix services are routed by.
	Domain string
	// AdvertiseAddress is the host:port the other replicas of the cluster
	// reach this one at, to forward requests to it while it is the active.
	// Empty means the listen address (with this machine's host name for an
	// unspecified IP).
	AdvertiseAddress string
	// PublicURL, if set, is the one address of the cluster
	// (https://{domain}[:port]): its host is the domain and its port the
	// one every URL the server builds carries (token issuers and audiences,
	// key identifiers, account endpoints, portal links, node channel URLs),
	// whatever port this replica listens on. Replicas of one cluster share
	// it, so what one issues another accepts. Empty means the domain and the
	// listener's port.
	PublicURL string
	// DataDir holds the CA, root key, admin credentials and SQLite database.
	DataDir string
	// Database is a postgres:// URL; empty means SQLite in DataDir.
	Database string
	// RootKey names the root key: a PKCS#11 URI (pkcs11:..., a key that
	// stays in a token; vault keys of type RSA-HSM and EC-HSM then live in
	// that token too) or a file holding the key (base64). Empty means
	// RootKeyFile, else CUSTODY_ROOT_KEY, else DataDir/root.key.
	RootKey string
	// RootKeyFile optionally names a file holding the root key (base64).
	RootKeyFile string
	Logger      *slog.Logger
	// KeyProbeInterval is how often the batch key-health monitor probes each
	// customer-managed key (default 5 s).
	KeyProbeInterval time.Duration
	// KeyProbeRate caps the key monitor's periodic probes a second
	// (default 20); with many keys and identities the cycle grows beyond
	// KeyProbeInterval. Probes the vaults' change feeds trigger are not capped.
	KeyProbeRate float64
	// ReencryptBatch is how many records a batch account's re-encryption
	// re-seals in one transaction (0: the batch service's default).
	ReencryptBatch int
	// ReencryptSettle is how long a re-encryption waits after its last
	// rewrite before it deletes the old DEK (0: the default).
	ReencryptSettle time.Duration
	// KeyGracePeriod is how long a key vault outage is ridden out before a
	// customer-key account locks (default 1 minute).
	KeyGracePeriod time.Duration
	// KeyVaultSweepInterval is how often the key vault purges soft-deleted
	// keys and vaults whose retention has ended and rotates keys whose
	// rotation policy is due (default 1 minute).
	KeyVaultSweepInterval time.Duration
	// AuditRetention is how long key vault audit records are kept; the key
	// vault sweep deletes older ones. Zero keeps them for ever.
	AuditRetention time.Duration
	// ReadTimeout bounds the time a client has to send one whole request,
	// headers and body (default 30 s); a slower one is answered 400 and
	// loses the connection. Responses are not bounded by it, so node
	// long-polls, whose response is held, are unaffected.
	ReadTimeout time.Duration
	// MetricsListen, if set, is the TCP address of a plain HTTP listener
	// that serves Prometheus /metrics and nothing else. Empty (the default)
	// serves no metrics; the public TLS listener never does.
	MetricsListen string
	// PprofListen, if set, is a loopback TCP address (127.0.0.1, ::1 or
	// localhost) of a plain HTTP listener that serves net/http/pprof's
	// profiles under /debug/pprof/ and nothing else. Empty (the default)
	// serves none; any other host is refused, since profiles show memory.
	PprofListen string
	// KeyVaultClock, if set, replaces time.Now in the key vault, so tests
	// can reach retention and purge dates without waiting days.
	KeyVaultClock func() time.Time
	// SigningKeyMaxAge is the age at which the token signing key is rotated
	// (default 30 days); older keys stay published so their tokens verify
	// until they expire.
	SigningKeyMaxAge time.Duration
	// ExternalVaultHosts are vault hosts ("host" or "host:port") outside
	// this server that batch accounts' customer-managed key identifiers may
	// name; by default only this server's own vaults may be named.
	ExternalVaultHosts []string
	// ExternalVaultCredentials sign in to the tenants of external vaults
	// (see batch.ExternalCredential); ExternalVaultCredentialsFile names a
	// JSON file of more ({"credentials": [...]}). Every allowed host a key
	// identifier names needs one.
	ExternalVaultCredentials     []batch.ExternalCredential
	ExternalVaultCredentialsFile string
	// ExternalCAFile, if set, is a PEM bundle of the only CAs trusted for
	// connections to external vaults, their token services and federated
	// issuers; by default the system roots are.
	ExternalCAFile string
	// Resolve sends outbound connections to external parties for a
	// "host:port" to another address ("ip" or "ip:port"), as curl's
	// --resolve does; TLS still verifies the host name.
	Resolve map[string]string
	// DisableLocalNodes stops the server from starting the nodes pools ask
	// for as local `custody node` processes; agents on other machines join
	// instead.
	DisableLocalNodes bool
	// NodeCommand is the command line that starts a local node agent
	// (default: this executable with the node subcommand).
	NodeCommand []string
	// NodeLog receives the output of local node agents (default: discarded).
	NodeLog io.Writer
	// TestJobScheduleMinimum, for tests only (no flag sets it), lowers the
	// smallest recurrenceInterval and startWindow a job schedule accepts
	// from Azure's minute, so tests can watch several runs in seconds.
	TestJobScheduleMinimum time.Duration
	// NodePoll is how long a node's sync is held (default 10 s); nodes
	// silent for 3 polls are lost and their tasks requeued.
	NodePoll time.Duration
	// NodeRoot is where local nodes keep their files, one directory per
	// node ({NodeRoot}/{account}/{pool}/{node}); default: the data
	// directory's sibling "{data-dir}-nodes". It must not be inside the
	// data directory.
	NodeRoot string
	// UnsafeSharedHostNodes runs local nodes' tasks without a sandbox, as
	// the server's own user: they can read its secrets. Only for hosts that
	// cannot build the sandbox (see node/sandbox), and said at start and in
	// /healthz.
	UnsafeSharedHostNodes bool
	// TaskDiskLimit, if positive, caps each task's disk budget below the
	// temporary disk of its pool's vmSize.
	TaskDiskLimit int64
}

// UnsafeNodesWarning is what the server says, at start and in /healthz,
// when local nodes run tasks without a sandbox.
const UnsafeNodesWarning = "local nodes run tasks WITHOUT a sandbox (--unsafe-shared-host-nodes): any task can read this server's secrets (root key, admin credentials, database) and every account's data"

// DefaultNodeRoot returns the default node root for a data directory: its
// sibling "{data-dir}-nodes".
func DefaultNodeRoot(dataDir string) string {
	dataDir = filepath.Clean(dataDir)
	return filepath.Join(filepath.Dir(dataDir), filepath.Base(dataDir)+"-nodes")
}

// DefaultReadTimeout is Config.ReadTimeout's default.
const DefaultReadTimeout = 30 * time.Second

// DefaultAuditRetention is how long `custody server` keeps key vault audit
// records unless --audit-retention says otherwise.
const DefaultAuditRetention = 90 * 24 * time.Hour

// MaxHeaderBytes bounds a request's line and headers (the request target
// included); larger ones are refused before any handler runs.
const MaxHeaderBytes = 64 << 10

// DefaultDataDir returns $CUSTODY_DATA_DIR or ~/.custody.
func DefaultDataDir() string {
	if d := os.Getenv("CUSTODY_DATA_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".custody"
	}
	return filepath.Join(home, ".custody")
}

// DefaultConfig returns the defaults of `custody server`.
func DefaultConfig() Config {
	return Config{Listen: "127.0.0.1:8443", Domain: "localhost", DataDir: DefaultDataDir()}
}

// Files the server writes into its data directory for the CLI and SDK
// programs.
const (
	AdminFile    = "admin.json"
	EndpointFile = "server.json"
	databaseFile = "custody.db"
)

// AdminCredentials is the bootstrap admin service principal, written to
// DataDir/admin.json (mode 0600) on first start.
type AdminCredentials struct {
	TenantID       string `json:"tenantId"`
	SubscriptionID string `json:"subscriptionId"`
	ClientID       string `json:"clientId"`
	ClientSecret   string `json:"clientSecret"`
}

// Endpoint says where a running server listens, written to
// DataDir/server.json on every start.
type Endpoint struct {
	Address string `json:"address"` // host:port actually listened on
	Domain  string `json:"domain"`
	Port    int    `json:"port"` // the port of the server's URLs (the public URL's)
	CAFile  string `json:"caFile"`
}

// Server is a running Custody server.
type Server struct {
	cfg      Config
	log      *slog.Logger
	DB       *sqlstore.DB
	Identity *identity.Service
	RM       *rm.Service
	HTTP     *httpapi.Server
	Batch    *batch.Service
	// BatchData is the batch data plane: jobs, tasks and certificates.
	BatchData *batch.DataService
	KeyVault  *keyvault.Service
	Compute   *compute.Service
	Admin     AdminCredentials
	Endpoint  Endpoint
	TLS       *tls.Config

	listener net.Listener
	srv      *http.Server
	// metrics serves /metrics on MetricsListen (nil when it is empty).
	metricsListener net.Listener
	metrics         *http.Server
	// pprof serves /debug/pprof/ on PprofListen (nil when it is empty).
	pprof         *http.Server
	pprofListener net.Listener
	root          *secret.Root
	// tasks are the compute service's task writes, fenced by the lease.
	tasks compute.Tasks
	// lease is the cluster's active lease on PostgreSQL (nil on SQLite,
	// whose one server is always the active).
	lease *lease
	// advertise is where other replicas reach this one (AdvertiseAddress).
	advertise string
	// caPool verifies the replicas' certificates (the data directory's CA).
	caPool *x509.CertPool
	// outbound carries connections to external vaults, their token
	// services and federated issuers (see outboundClient).
	outbound *http.Client
	external *batch.ExternalVaults
	// role is "active" or "standby" (httpapi.Config.Role).
	role atomic.Value
	// dataLock is the data directory's lock file, held for the process's
	// life when the database is SQLite.
	dataLock *os.File
	// warnings are said at start and in /healthz.
	warnings []string
}

// Warnings returns what the server says about itself at start and in
// /healthz (an unsafe configuration).
func (s *Server) Warnings() []string { return s.warnings }

// Open prepares a server: it creates or loads everything in the data
// directory, opens and migrates the database, bootstraps the tenant,
// subscription and admin principal, and binds the listener. Serve starts
// answering.
func Open(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Domain == "" {
		cfg.Domain = "localhost"
	}
	publicPort := 0
	if cfg.PublicURL != "" {
		domain, port, err := ParsePublicURL(cfg.PublicURL)
		if err != nil {
			return nil, err
		}
		cfg.Domain, publicPort = domain, port
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := checkNodeRoot(&cfg); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	if s.outbound, err = outboundClient(cfg); err != nil {
		return nil, err
	}
	if s.external, err = externalVaults(cfg); err != nil {
		return nil, err
	}
	if w := credentialsFileWarning(cfg.ExternalVaultCredentialsFile); w != "" {
		s.warnings = append(s.warnings, w)
		s.log.Warn(w)
	}
	if !cfg.DisableLocalNodes && cfg.UnsafeSharedHostNodes {
		s.warnings = append(s.warnings, UnsafeNodesWarning)
		s.log.Warn(UnsafeNodesWarning)
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	if cfg.RootKey != "" && cfg.RootKeyFile != "" {
		return nil, errors.New("--root-key and --root-key-file both name the root key: give one of them")
	}
	spec := cfg.RootKey
	if spec == "" {
		spec = cfg.RootKeyFile
	}
	if s.root, err = secret.LoadRoot(cfg.DataDir, spec, false); err != nil {
		return nil, err
	}
	sealer := s.root.Sealer
	s.log.Info("root key", "where", s.root.Where)
	dsn := cfg.Database
	if dsn == "" {
		dsn = filepath.Join(cfg.DataDir, databaseFile)
		if s.dataLock, err = lockDataDir(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	if s.DB, err = sqlstore.Open(ctx, dsn); err != nil {
		return nil, err
	}
	if s.DB.Engine == sqlstore.Postgres {
		// Several replicas may share the database: one of them at a time
		// is the active (see Serve), and first-start bootstrap runs one
		// replica at a time.
		if s.lease, err = newLease(ctx, dsn); err != nil {
			return nil, err
		}
		unlock, err := advisoryLock(ctx, s.DB.SQL(), "bootstrap")
		if err != nil {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
		defer unlock()
	}

	s.listener, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	if s.advertise, err = advertiseAddress(cfg.AdvertiseAddress, s.listener.Addr().(*net.TCPAddr)); err != nil {
		return nil, err
	}
	// port is the one the server's own URLs carry.
	port := s.listener.Addr().(*net.TCPAddr).Port
	if publicPort != 0 {
		port = publicPort
	}

	rmStore := &sqlstore.RMStore{DB: s.DB}
	tenant, err := rmStore.SetSettingIfAbsent(ctx, "tenant_id", identity.NewID())
	if err != nil {
		return nil, err
	}
	sub, err := rmStore.SetSettingIfAbsent(ctx, "subscription_id", identity.NewID())
	if err != nil {
		return nil, err
	}
	idStore := &sqlstore.IdentityStore{DB: s.DB}
	authority, err := identity.NewAuthority(ctx, idStore, sealer, nil)
	if err != nil {
		return nil, err
	}
	if cfg.SigningKeyMaxAge == 0 {
		cfg.SigningKeyMaxAge = 30 * 24 * time.Hour
		s.cfg.SigningKeyMaxAge = cfg.SigningKeyMaxAge
	}
	if rotated, err := authority.RotateIfOlder(ctx, cfg.SigningKeyMaxAge); err != nil {
		return nil, fmt.Errorf("rotate token signing key: %w", err)
	} else if rotated {
		s.log.Info("rotated the token signing key", "kid", authority.ActiveKID())
	}
	loginURL := publicURL("login", cfg.Domain, port)
	s.Identity = &identity.Service{
		Store: idStore, Authority: authority, TenantID: tenant,
		Issuer:    loginURL + "/" + tenant + "/v2.0",
		Resources: identity.DefaultResources(cfg.Domain, port),
		Issuers:   &identity.IssuerKeys{Client: s.outbound},
	}
	s.RM = &rm.Service{Store: rmStore, SubscriptionID: sub, TenantID: tenant, NewID: identity.NewID}
	s.RM.Cleaners = append(s.RM.Cleaners, rm.GroupCleanerFunc(s.deleteIdentitiesInGroup))

	if err := s.bootstrapAdmin(ctx); err != nil {
		return nil, fmt.Errorf("bootstrap admin: %w", err)
	}

	cert, caPool, err := tlsca.Ensure(cfg.DataDir, cfg.Domain, nil)
	if err != nil {
		return nil, err
	}
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s.caPool = caPool

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.HTTP = httpapi.New(httpapi.Config{
		Domain: cfg.Domain, Port: port, Identity: s.Identity, RM: s.RM, Logger: s.log, Registry: reg,
		Health:   func() error { return s.DB.SQL().PingContext(context.Background()) },
		Warnings: s.warnings,
		Role:     s.Role,
		Standby:  s.forwarder(),
	})
	// Key vault: management (ARM; a resource group delete soft-deletes its
	// vaults) and the keys data plane on {vault}.vault.{domain}.
	s.KeyVault = &keyvault.Service{Vaults: &sqlstore.VaultStore{DB: s.DB}, Keys: &sqlstore.KeyStore{DB: s.DB}, Sealer: sealer,
		RM: s.RM, TenantID: tenant, Domain: cfg.Domain, Port: port, Logger: s.log, Now: cfg.KeyVaultClock,
		AuditRetention: cfg.AuditRetention}
	if s.root.Token != nil {
		s.KeyVault.HSM = tokenHSM{s.root.Token}
	}
	if s.lease != nil {
		s.KeyVault.Fence = s.fence
	}
	if s.DB.Engine == sqlstore.SQLite {
		// This process is the database's only writer: lookups and role
		// assignments can be cached.
		s.KeyVault.CacheLookups()
		s.RM.CacheRoleAssignments()
	}
	// The vault's change feed hears of role assignment changes and deleted
	// principals from their owners, in process.
	s.RM.ObserveRoleAssignments(s.KeyVault.RoleAssignmentChanged)
	s.Identity.ObservePrincipalDeletions(s.KeyVault.PrincipalDeleted)
	s.HTTP.HandleVault(s.HTTP.VaultAuditHandler(s.KeyVault, s.HTTP.VaultHandler(s.KeyVault)))
	s.RM.Cleaners = append(s.RM.Cleaners, s.KeyVault)
	s.HTTP.RegisterKeyVault(s.KeyVault)
	s.Endpoint = Endpoint{Address: s.listener.Addr().String(), Domain: cfg.Domain, Port: port, CAFile: filepath.Join(cfg.DataDir, tlsca.CAFile)}
	if err := writeJSONFile(filepath.Join(cfg.DataDir, EndpointFile), s.Endpoint, 0o644); err != nil {
		return nil, err
	}
	if err := s.openBatch(ctx); err != nil {
		return nil, fmt.Errorf("batch service: %w", err)
	}
	if err := s.openPortal(); err != nil {
		return nil, fmt.Errorf("portal: %w", err)
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	s.srv = &http.Server{
		Handler:           s.HTTP.Handler(),
		TLSConfig:         s.TLS,
		ReadHeaderTimeout: min(10*time.Second, cfg.ReadTimeout),
		// The connection's read deadline is cleared once the body has been
		// read (HTTP/1.1), and HTTP/2 applies it to the body alone, so
		// handlers may hold their response as long as they need.
		ReadTimeout:    cfg.ReadTimeout,
		MaxHeaderBytes: MaxHeaderBytes,
		IdleTimeout:    120 * time.Second,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	if s.Compute != nil {
		s.srv.RegisterOnShutdown(s.Compute.Drain)
	}
	if cfg.MetricsListen != "" {
		if s.metricsListener, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			return nil, fmt.Errorf("metrics listener on %s: %w", cfg.MetricsListen, err)
		}
		s.metrics = &http.Server{Handler: s.HTTP.MetricsHandler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	}
	if cfg.PprofListen != "" {
		if s.pprofListener, err = listenLoopback(cfg.PprofListen); err != nil {
			return nil, fmt.Errorf("--pprof-listen %s: %w", cfg.PprofListen, err)
		}
		s.pprof = &http.Server{Handler: pprofHandler(), ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	}
	return s, nil
}

// ParsePublicURL reads a --public-url: https, a host name (the domain the
// services are routed under) and an optional port (default 443), nothing
// else.
func ParsePublicURL(raw string) (domain string, port int, err error) {
	u, err := url.Parse(raw)
	bad := func(why string) error {
		return fmt.Errorf("--public-url %q: %s; give https://{domain} or https://{domain}:{port}, e.g. https://custody.example:8443", raw, why)
	}
	if err != nil {
		return "", 0, bad(err.Error())
	}
	if u.Scheme != "https" {
		return "", 0, bad("the scheme must be https")
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", 0, bad("only a scheme, a host and a port are allowed")
	}
	domain = strings.ToLower(u.Hostname())
	if domain == "" || net.ParseIP(domain) != nil || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return "", 0, bad("the host must be a DNS name (services answer on login.{host}, management.{host}, ...)")
	}
	port = 443
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil || port < 1 || port > 65535 {
			return "", 0, bad("the port must be 1 to 65535")
		}
	}
	return domain, port, nil
}

func publicURL(name, domain string, port int) string {
	if port == 443 {
		return "https://" + name + "." + domain
	}
	return "https://" + name + "." + domain + ":" + strconv.Itoa(port)
}

// deleteIdentitiesInGroup is the managed identity provider's part of a
// resource group delete.
func (s *Server) deleteIdentitiesInGroup(ctx context.Context, sub, rg string) error {
	us, err := s.Identity.Store.ListUserAssignedIdentities(ctx, sub, rg)
	if err != nil {
		return err
	}
	for _, u := range us {
		if err := s.Identity.Store.DeleteUserAssignedIdentity(ctx, u.ID); err != nil && !custody.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// bootstrapAdmin creates the admin service principal (Owner of the
// subscription) on first start and keeps DataDir/admin.json holding a valid
// secret for it.
func (s *Server) bootstrapAdmin(ctx context.Context) error {
	path := filepath.Join(s.cfg.DataDir, AdminFile)
	rmStore := s.RM.Store
	clientID, err := rmStore.Setting(ctx, "admin_client_id")
	if err != nil && !custody.IsNotFound(err) {
		return err
	}
	if clientID != "" {
		var have AdminCredentials
		if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &have) == nil && have.ClientID == clientID {
			if _, err := s.Identity.Authenticate(ctx, have.ClientID, have.ClientSecret); err == nil {
				s.Admin = have
				return nil
			}
		}
		// The file is gone or stale: give the admin a new secret.
		sec, err := s.Identity.AddSecret(ctx, clientID, 1)
		if err != nil {
			return err
		}
		s.Admin = AdminCredentials{TenantID: s.Identity.TenantID, SubscriptionID: s.RM.SubscriptionID, ClientID: clientID, ClientSecret: sec}
		s.log.Info("wrote new admin credentials", "file", path)
		return writeJSONFile(path, s.Admin, 0o600)
	}
	p, sec, err := s.Identity.CreateServicePrincipal(ctx, "custody-admin", 1)
	if err != nil {
		return err
	}
	if _, err := s.RM.CreateRoleAssignment(ctx, rm.SubscriptionID(s.RM.SubscriptionID), "", rm.RoleDefinitionID(s.RM.SubscriptionID, rm.RoleOwner), p.ObjectID, "ServicePrincipal", "bootstrap"); err != nil {
		return err
	}
	s.Admin = AdminCredentials{TenantID: s.Identity.TenantID, SubscriptionID: s.RM.SubscriptionID, ClientID: p.AppID, ClientSecret: sec}
	if err := writeJSONFile(path, s.Admin, 0o600); err != nil {
		return err
	}
	if _, err := rmStore.SetSettingIfAbsent(ctx, "admin_client_id", p.AppID); err != nil {
		return err
	}
	s.log.Info("created admin service principal (Owner of the subscription)", "client_id", p.AppID, "credentials_file", path)
	return nil
}

func writeJSONFile(path string, v any, mode os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Serve answers requests until ctx is done, then shuts down gracefully
// (in-flight requests get up to 10 seconds).
//
// On SQLite the server is the cluster's one replica, always active. On
// PostgreSQL it is a standby until it holds the cluster's active lease (see
// lease); only the active runs the scheduler, the node channel, local nodes,
// the key monitor, the key vault sweep and signing key rotation, and
// answers requests (a standby answers 503 with a Retry-After, /healthz
// excepted). An active that loses its lease stops all of that at once and
// Serve returns ErrLeaseLost.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 3)
	go func() { errc <- s.srv.ServeTLS(s.listener, "", "") }()
	if s.metrics != nil {
		go func() { errc <- s.metrics.Serve(s.metricsListener) }()
	}
	if s.pprof != nil {
		go func() { errc <- s.pprof.Serve(s.pprofListener) }()
	}
	var jobs activeJobs
	if s.lease == nil {
		s.role.Store(httpapi.RoleActive)
		s.startActive(ctx, &jobs)
	} else {
		s.role.Store(RoleStandby)
		go func() {
			if err := s.campaign(ctx, &jobs); err != nil {
				errc <- err
			}
		}()
	}
	s.log.Info("custody server listening",
		"address", s.Endpoint.Address,
		"login", publicURL("login", s.cfg.Domain, s.Endpoint.Port),
		"management", publicURL("management", s.cfg.Domain, s.Endpoint.Port),
		"tenant", s.Identity.TenantID, "subscription", s.RM.SubscriptionID,
		"data_dir", s.cfg.DataDir, "database", string(s.DB.Engine), "role", s.Role())
	var served error
	select {
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			served = err
		}
	case <-ctx.Done():
	}
	s.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.metrics != nil {
		_ = s.metrics.Close()
	}
	if s.pprof != nil {
		_ = s.pprof.Close()
	}
	jobs.stop()
	err := s.srv.Shutdown(sctx)
	// The key vault stores its queued audit records before it stops.
	jobs.waitKeyVault()
	if s.lease != nil {
		// Local nodes stop before another replica may take over.
		s.lease.release(jobs.wait(10 * time.Second))
	}
	if served != nil {
		return served
	}
	return err
}

// RoleStandby is the role of a replica waiting for the active lease.
const RoleStandby = "standby"

// Role returns "active" or "standby" (reported by /healthz).
func (s *Server) Role() string {
	if r, _ := s.role.Load().(string); r != "" {
		return r
	}
	return RoleStandby
}

// fence returns nil while this server may act as the active replica: on
// PostgreSQL it checks that the lease's session is alive and holds the
// lock.
func (s *Server) fence(ctx context.Context) error {
	if s.lease == nil {
		return nil
	}
	return s.lease.check(ctx)
}

// activeJobs are the goroutines only the active replica runs.
type activeJobs struct {
	mu      sync.Mutex
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	kvDone  chan struct{}
	stopped bool
}

func (j *activeJobs) stop() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.stopped = true
	if j.cancel != nil {
		j.cancel()
	}
}

func (j *activeJobs) waitKeyVault() {
	j.mu.Lock()
	done := j.kvDone
	j.mu.Unlock()
	if done != nil {
		<-done
	}
}

// wait waits up to d for the jobs to end and reports whether they did.
func (j *activeJobs) wait(d time.Duration) bool {
	done := make(chan struct{})
	go func() { j.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// startActive starts what only the active replica runs, until ctx is done
// or jobs are stopped.
func (s *Server) startActive(ctx context.Context, jobs *activeJobs) {
	jobs.mu.Lock()
	defer jobs.mu.Unlock()
	if jobs.stopped {
		return
	}
	ctx, jobs.cancel = context.WithCancel(ctx)
	jobs.kvDone = make(chan struct{})
	run := func(f func()) {
		jobs.wg.Add(1)
		go func() { defer jobs.wg.Done(); f() }()
	}
	run(func() { s.Batch.RunMonitor(ctx, s.log) })
	run(func() { s.Batch.RunReencryption(ctx, s.log) })
	run(func() { s.rotateSigningKeys(ctx) })
	run(func() { s.Compute.Run(ctx) })
	run(func() { s.BatchData.RunDeletions(ctx, 10*time.Second, s.log) })
	run(func() { s.BatchData.RunJobSchedules(ctx, s.log) })
	run(func() {
		defer close(jobs.kvDone)
		s.KeyVault.Run(ctx, s.cfg.KeyVaultSweepInterval)
	})
}

// campaign waits for the cluster's active lease, then makes this replica
// the active one until ctx is done (nil) or the lease is lost (an error
// wrapping ErrLeaseLost, with everything the active runs stopped and
// requests refused first).
func (s *Server) campaign(ctx context.Context, jobs *activeJobs) error {
	s.log.Info("standby: waiting for the cluster's active lease")
	clean, err := s.lease.acquire(ctx, s.advertise, func(err error) { s.log.Warn("active lease", "err", err) })
	if err != nil {
		return nil
	}
	if !clean {
		// The former active did not release the lease: it may still be
		// running, cut off from the database, until its next check fails.
		s.log.Warn("took over a lease the former active did not release; waiting for it to have stopped", "wait", leaseTakeover)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(leaseTakeover):
		}
		if err := s.lease.check(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	// Signing keys another active rotated are learnt before serving.
	if err := s.Identity.Authority.Reload(ctx); err != nil {
		s.log.Warn("reload token signing keys", "err", err)
	}
	if rotated, err := s.Identity.Authority.RotateIfOlder(ctx, s.cfg.SigningKeyMaxAge); err != nil {
		s.log.Warn("rotate token signing key", "err", err)
	} else if rotated {
		s.log.Info("rotated the token signing key", "kid", s.Identity.Authority.ActiveKID())
	}
	s.role.Store(httpapi.RoleActive)
	s.log.Info("this replica is now the cluster's active one")
	s.startActive(ctx, jobs)
	t := time.NewTicker(leaseHeartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := s.lease.check(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.role.Store(RoleStandby)
			jobs.stop()
			s.log.Error("lost the cluster's active lease: stopped everything only the active runs", "err", err)
			return err
		}
	}
}

// Close releases what Open acquired. It is safe after a partial Open.
func (s *Server) Close() error {
	if s.srv != nil {
		_ = s.srv.Close()
	}
	if s.listener != nil {
		_ = s.listener.Close()
	}
	if s.metrics != nil {
		_ = s.metrics.Close()
	}
	if s.metricsListener != nil {
		_ = s.metricsListener.Close()
	}
	if s.pprof != nil {
		_ = s.pprof.Close()
	}
	if s.pprofListener != nil {
		_ = s.pprofListener.Close()
	}
	if s.lease != nil {
		s.lease.release(false)
	}
	var err error
	if s.DB != nil {
		err = s.DB.Close()
	}
	s.root.Close()
	if s.dataLock != nil {
		// Closing the file releases the lock; the file stays.
		_ = s.dataLock.Close()
		s.dataLock = nil
	}
	return err
}

// MetricsAddr returns the address /metrics is served on, or "" when
// metrics are not served.
func (s *Server) MetricsAddr() string {
	if s.metricsListener == nil {
		return ""
	}
	return s.metricsListener.Addr().String()
}

// PprofAddr returns the address /debug/pprof/ is served on, or "" when
// profiles are not served.
func (s *Server) PprofAddr() string {
	if s.pprofListener == nil {
		return ""
	}
	return s.pprofListener.Addr().String()
}

// Port returns the port of the server's URLs: the public URL's if one is
// configured, else the one it listens on.
func (s *Server) Port() int { return s.Endpoint.Port }

// DataDir returns the data directory.
func (s *Server) DataDir() string { return s.cfg.DataDir }

// NodeRoot returns where local nodes keep their files
// ({NodeRoot}/{account}/{pool}/{node}).
func (s *Server) NodeRoot() string { return s.cfg.NodeRoot }

// rotateSigningKeys rotates the token signing key once it is older than
// SigningKeyMaxAge, checking hourly until ctx is done.
func (s *Server) rotateSigningKeys(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s.fence(ctx) != nil {
				continue
			}
			if rotated, err := s.Identity.Authority.RotateIfOlder(ctx, s.cfg.SigningKeyMaxAge); err != nil {
				s.log.Warn("rotate token signing key", "err", err)
			} else if rotated {
				s.log.Info("rotated the token signing key", "kid", s.Identity.Authority.ActiveKID())
			}
		}
	}
}
