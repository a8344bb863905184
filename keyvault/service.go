package keyvault

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"custody/rm"
)

// Sealer seals private key material under the server's root key.
type Sealer interface {
	Seal(plaintext, aad []byte) []byte
	Open(sealed, aad []byte) ([]byte, error)
}

// Service is the key vault. Vault management (vaults.go) serves the
// resource manager; key operations (keys.go) serve each vault's data plane.
type Service struct {
	Vaults VaultStore
	Keys   KeyStore
	Sealer Sealer
	// HSM, if set, holds the keys of type RSA-HSM and EC-HSM; without one
	// they are refused.
	HSM HSM
	// RM answers role-based access checks (vaults with
	// enableRbacAuthorization) and resource group existence.
	RM *rm.Service
	// TenantID is the server's tenant; vaults must name it.
	TenantID string
	// Domain and Port build vault URIs and key ids:
	// https://{vault}.vault.{domain}:{port}/keys/{name}/{version}.
	Domain string
	Port   int
	Now    func() time.Time
	// AuditRetention is how long audit records are kept: Sweep deletes
	// older ones. Zero keeps them for ever.
	AuditRetention time.Duration
	// Fence, if set, is asked before each sweep of Run whether this server
	// may still do background work; an error skips the sweep. Replicas
	// pass their hold on the cluster's active lease.
	Fence func(ctx context.Context) error

	// Logger receives background and audit failures; nil means
	// slog.Default.
	Logger *slog.Logger

	// state is the in-memory part of the keys data plane (opened keys, the
	// audit queue), made on first use.
	stateOnce sync.Once
	st        *keysState

	// changeLg is the change feed (changes.go), made on first use.
	changeOnce sync.Once
	changeLg   *changeLog
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// VaultURI returns the data-plane URL of a vault, with a trailing slash as
// Azure writes it.
func (s *Service) VaultURI(name string) string {
	return "https://" + s.VaultHost(name) + "/"
}

// VaultHost returns {vault}.vault.{domain}[:{port}].
func (s *Service) VaultHost(name string) string {
	h := name + ".vault." + s.Domain
	if s.Port != 443 && s.Port != 0 {
		h += ":" + strconv.Itoa(s.Port)
	}
	return h
}
