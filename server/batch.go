package server

import (
	"context"
	"net/http"
	"time"

	"custody/batch"
	"custody/identity"
	"custody/sqlstore"
	"custody/tlsca"
)

// identityAdapter gives the batch service what it needs of the identity
// service.
type identityAdapter struct{ svc *identity.Service }

func (a identityAdapter) CreateSystemAssigned(ctx context.Context, resourceID string) (string, error) {
	p, err := a.svc.CreateSystemAssigned(ctx, resourceID)
	if err != nil {
		return "", err
	}
	return p.ObjectID, nil
}

func (a identityAdapter) DeleteSystemAssigned(ctx context.Context, resourceID string) error {
	return a.svc.DeleteSystemAssigned(ctx, resourceID)
}

func (a identityAdapter) UserAssigned(ctx context.Context, resourceID string) (batch.UserAssignedIdentity, error) {
	u, err := a.svc.Store.UserAssignedIdentity(ctx, resourceID)
	if err != nil {
		return batch.UserAssignedIdentity{}, err
	}
	return batch.UserAssignedIdentity{PrincipalID: u.PrincipalID, ClientID: u.ClientID}, nil
}

// selfClient returns an HTTP client for calling this server's own public
// APIs the way an outside client does: TLS verified against the server's
// CA, every name under the domain dialled at the listener.
func (s *Server) selfClient() (*http.Client, error) {
	pool, err := tlsca.LoadPool(s.cfg.DataDir)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: Transport(pool, s.cfg.Domain, s.Endpoint.Address), Timeout: 30 * time.Second}, nil
}

// openBatch builds the batch service. Customer keys are reached through the
// key vault's REST API with managed identity tokens, over TLS, like any
// client.
func (s *Server) openBatch(ctx context.Context) error {
	store := &sqlstore.BatchAccountStore{DB: s.DB}
	platform, err := batch.NewPlatformKEK(ctx, store, s.root.Sealer)
	if err != nil {
		return err
	}
	client, err := s.selfClient()
	if err != nil {
		return err
	}
	s.Batch = &batch.Service{
		Accounts: store, Platform: platform, Sealer: s.root.Sealer,
		Vault: &batch.VaultREST{Transport: client, Token: func(ctx context.Context, principalID, resource string) (string, time.Time, error) {
			tok, err := s.Identity.ManagedIdentityToken(ctx, principalID, resource)
			if err != nil {
				return "", time.Time{}, err
			}
			return tok.Raw, tok.ExpiresAt, nil
		}},
		Identities: identityAdapter{s.Identity}, RM: s.RM, TenantID: s.Identity.TenantID,
		Domain: s.cfg.Domain, Port: s.Endpoint.Port,
		ProbeInterval: s.cfg.KeyProbeInterval, GracePeriod: s.cfg.KeyGracePeriod, ProbeRate: s.cfg.KeyProbeRate,
		External:       s.external,
		NewID:          identity.NewID,
		ReencryptBatch: s.cfg.ReencryptBatch, ReencryptSettle: s.cfg.ReencryptSettle,
	}
	// Keys in external vaults: reached over the outbound client, with a
	// token from the external tenant, got with a client secret or with an
	// assertion this server signs for the account's identity.
	s.external.Transport = s.outbound
	s.external.Assertion = func(ctx context.Context, principalID, subject, audience string) (string, error) {
		tok, _, err := s.Identity.FederationAssertion(ctx, principalID, subject, audience)
		return tok, err
	}
	s.external.IdentityExists = func(ctx context.Context, principalID string) error {
		_, err := s.Identity.ManagedIdentity(ctx, principalID)
		return err
	}
	s.external.Vault = &batch.VaultREST{Transport: s.outbound, Credential: s.external.TokenCredential}
	if s.lease != nil {
		s.Batch.Fence = s.fence
	}
	s.RM.Cleaners = append(s.RM.Cleaners, s.Batch)
	s.HTTP.RegisterBatchAccounts(s.Batch)
	// Data plane: jobs, tasks, job schedules and certificates, deleted with
	// their account.
	dataStore := &sqlstore.BatchDataStore{DB: s.DB}
	data := &batch.DataService{Keys: s.Batch, Store: dataStore,
		Schedules: &sqlstore.BatchJobScheduleStore{DB: s.DB}, MinScheduleInterval: s.cfg.TestJobScheduleMinimum}
	if s.lease != nil {
		data.Fence = s.fence
	}
	// A re-encryption walks the data plane's records and the pools.
	s.Batch.Resealers = []batch.Resealer{dataStore, &sqlstore.ComputePoolStore{DB: s.DB}}
	s.Batch.Data, s.BatchData = data, data
	s.HTTP.RegisterBatchData(s.Batch, data)
	s.openCompute(data)
	return nil
}
