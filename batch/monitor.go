package batch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// RunMonitor probes every customer-managed key each ProbeInterval until ctx
// is done. A definite refusal locks the account at once; a vault outage
// locks it once the last good probe is older than GracePeriod; a good probe
// of a locked account unlocks it. For a versionless key identifier, a newer
// key version is picked up by rewrapping the DEK with it.
func (s *Service) RunMonitor(ctx context.Context, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(s.probeInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.ProbeAll(ctx, log)
		}
	}
}

// ProbeAll probes every account with a customer-managed key once, a few at
// a time.
func (s *Service) ProbeAll(ctx context.Context, log *slog.Logger) {
	as, err := s.Accounts.ListAccounts(ctx, "", "")
	if err != nil {
		log.Warn("key monitor: list accounts", "err", err)
		return
	}
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, a := range as {
		if a.Encryption.KeySource != KeySourceKeyVault {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(name string) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := s.Probe(ctx, name); err != nil && log != nil {
				log.Warn("key monitor: probe", "account", name, "err", err)
			}
		}(a.Name)
	}
	wg.Wait()
}

// Probe checks one account's customer-managed key now and locks, unlocks or
// follows a new key version as needed. It returns only unexpected errors.
func (s *Service) Probe(ctx context.Context, name string) error {
	mu := s.accountLock(name)
	mu.Lock()
	defer mu.Unlock()
	a, err := s.Accounts.Account(ctx, name)
	if err != nil {
		return err
	}
	if a.Encryption.KeySource != KeySourceKeyVault {
		return nil
	}
	dek, err := s.unwrap(ctx, a)
	if err != nil {
		var ke *KeyError
		if !errors.As(err, &ke) {
			return err
		}
		if ke.Definite {
			s.lock(ctx, a, ke.Reason)
			return nil
		}
		if a.Key.State == KeyAvailable && s.now().Sub(a.Key.LastProbe) > s.gracePeriod() {
			s.lock(ctx, a, fmt.Sprintf("%s for longer than the grace period of %s", ke.Reason, s.gracePeriod()))
		}
		return nil
	}
	now := s.now().UTC()
	k := a.Key
	unlocked := k.State != KeyAvailable
	if unlocked {
		k.State, k.Reason, k.Since = KeyAvailable, "", now
	}
	k.LastProbe = now
	if err := s.Accounts.UpdateKeyState(ctx, a.Name, k); err != nil {
		return err
	}
	a.Key = k
	s.cacheDEK(a.Name, dek)
	if unlocked {
		s.notifyKeyState(a.Name, false)
	}

	// A versionless identifier follows the key's latest version.
	id, err := ParseKeyID(a.Encryption.KeyIdentifier)
	if err != nil || id.Version != "" || s.CheckVaultHost(id) != nil {
		return nil
	}
	info, err := s.Vault.GetKey(ctx, id, a.Key.Wrapped.Identity)
	if err != nil {
		return nil // the next unwrap decides about locking
	}
	cur, _ := ParseKeyID(a.Key.Wrapped.KeyID)
	if info.KID.Version == "" || info.KID.Version == cur.Version {
		return nil
	}
	w, err := s.wrapWithCustomerKey(ctx, a, info.KID.String(), dek.raw)
	if err != nil {
		return fmt.Errorf("follow new key version %s: %w", info.KID, err)
	}
	prev := a.Key.Wrapped.KeyID
	a.Key.Wrapped = w
	a.UpdatedAt = now
	return s.Accounts.UpdateAccount(ctx, a, prev)
}
