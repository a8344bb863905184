package keyvault

import (
	"context"
	"slices"
	"strings"
	"sync"
)

// CacheLookups makes s keep vaults, keys and key versions it has read in
// memory, so that a crypto operation does not read three rows. Every write
// through s.Vaults or s.Keys drops the entries it touches at once, so access
// policy, attribute and deletion changes take effect on the next request.
//
// Use it only when this process is the only writer of the database (the
// embedded SQLite store): writes made by another process (a second server
// replica on a shared PostgreSQL database) would not be seen.
func (s *Service) CacheLookups() {
	c := &lookupCache{vaults: map[string]*Vault{}, keys: map[string]*keyEntry{}}
	s.Vaults = &cachedVaults{VaultStore: s.Vaults, c: c}
	s.Keys = &cachedKeys{KeyStore: s.Keys, c: c}
}

type lookupCache struct {
	mu     sync.Mutex
	gen    uint64 // bumped by every write; a read that saw another gen is not cached
	vaults map[string]*Vault
	keys   map[string]*keyEntry // vault/key
}

type keyEntry struct {
	key      *Key
	latest   *KeyVersion
	versions map[string]*KeyVersion
}

const maxCachedKeys = 10000

func (c *lookupCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (c *lookupCache) invalidateVault(vault string) {
	v := strings.ToLower(vault)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.vaults, v)
	for k := range c.keys {
		if strings.HasPrefix(k, v+"/") {
			delete(c.keys, k)
		}
	}
}

func (c *lookupCache) invalidateKey(vault, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.keys, strings.ToLower(vault)+"/"+strings.ToLower(key))
}

// entry returns the key entry to fill, or nil if gen is stale.
func (c *lookupCache) entry(gen uint64, vault, key string) *keyEntry {
	if c.gen != gen {
		return nil
	}
	if len(c.keys) >= maxCachedKeys {
		clear(c.keys)
	}
	id := strings.ToLower(vault) + "/" + strings.ToLower(key)
	e := c.keys[id]
	if e == nil {
		e = &keyEntry{versions: map[string]*KeyVersion{}}
		c.keys[id] = e
	}
	return e
}

func copyVault(v *Vault) *Vault {
	out := *v
	out.AccessPolicies = slices.Clone(v.AccessPolicies)
	return &out
}

func copyKey(k *Key) *Key { out := *k; return &out }
func copyVersion(kv *KeyVersion) *KeyVersion {
	out := *kv
	out.KeyOps = slices.Clone(kv.KeyOps)
	return &out
}

type cachedVaults struct {
	VaultStore
	c *lookupCache
}

func (s *cachedVaults) Vault(ctx context.Context, name string) (*Vault, error) {
	id := strings.ToLower(name)
	s.c.mu.Lock()
	v, gen := s.c.vaults[id], s.c.gen
	s.c.mu.Unlock()
	if v != nil {
		return copyVault(v), nil
	}
	v, err := s.VaultStore.Vault(ctx, name)
	if err != nil {
		return nil, err
	}
	s.c.mu.Lock()
	if s.c.gen == gen {
		if len(s.c.vaults) >= maxCachedKeys {
			clear(s.c.vaults)
		}
		s.c.vaults[id] = copyVault(v)
	}
	s.c.mu.Unlock()
	return v, nil
}

func (s *cachedVaults) PutVault(ctx context.Context, v *Vault) error {
	defer s.c.invalidateVault(v.Name)
	s.c.invalidateVault(v.Name)
	return s.VaultStore.PutVault(ctx, v)
}

func (s *cachedVaults) PurgeVault(ctx context.Context, name string) error {
	defer s.c.invalidateVault(name)
	s.c.invalidateVault(name)
	return s.VaultStore.PurgeVault(ctx, name)
}

type cachedKeys struct {
	KeyStore
	c *lookupCache
}

var _ AuditBatcher = (*cachedKeys)(nil)

func (s *cachedKeys) AppendAuditBatch(ctx context.Context, rs []*AuditRecord) error {
	if b, ok := s.KeyStore.(AuditBatcher); ok {
		return b.AppendAuditBatch(ctx, rs)
	}
	for _, r := range rs {
		if err := s.KeyStore.AppendAudit(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

func (s *cachedKeys) Key(ctx context.Context, vault, name string) (*Key, error) {
	gen, hit := s.lookup(vault, name, func(e *keyEntry) any { return e.key })
	if hit != nil {
		return copyKey(hit.(*Key)), nil
	}
	k, err := s.KeyStore.Key(ctx, vault, name)
	if err != nil {
		return nil, err
	}
	s.c.mu.Lock()
	if e := s.c.entry(gen, vault, name); e != nil {
		e.key = copyKey(k)
	}
	s.c.mu.Unlock()
	return k, nil
}

func (s *cachedKeys) KeyVersion(ctx context.Context, vault, name, version string) (*KeyVersion, error) {
	ver := strings.ToLower(version)
	gen, hit := s.lookup(vault, name, func(e *keyEntry) any { return e.versions[ver] })
	if hit != nil {
		return copyVersion(hit.(*KeyVersion)), nil
	}
	kv, err := s.KeyStore.KeyVersion(ctx, vault, name, version)
	if err != nil {
		return nil, err
	}
	s.c.mu.Lock()
	if e := s.c.entry(gen, vault, name); e != nil && len(e.versions) < 1000 {
		e.versions[ver] = copyVersion(kv)
	}
	s.c.mu.Unlock()
	return kv, nil
}

func (s *cachedKeys) LatestKeyVersion(ctx context.Context, vault, name string) (*KeyVersion, error) {
	gen, hit := s.lookup(vault, name, func(e *keyEntry) any { return e.latest })
	if hit != nil {
		return copyVersion(hit.(*KeyVersion)), nil
	}
	kv, err := s.KeyStore.LatestKeyVersion(ctx, vault, name)
	if err != nil {
		return nil, err
	}
	s.c.mu.Lock()
	if e := s.c.entry(gen, vault, name); e != nil {
		e.latest = copyVersion(kv)
	}
	s.c.mu.Unlock()
	return kv, nil
}

// lookup returns the current generation and the cached value get finds
// (nil if none).
func (s *cachedKeys) lookup(vault, name string, get func(*keyEntry) any) (uint64, any) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	e := s.c.keys[strings.ToLower(vault)+"/"+strings.ToLower(name)]
	if e == nil {
		return s.c.gen, nil
	}
	v := get(e)
	switch x := v.(type) {
	case *Key:
		if x == nil {
			return s.c.gen, nil
		}
	case *KeyVersion:
		if x == nil {
			return s.c.gen, nil
		}
	}
	return s.c.gen, v
}

// Writes drop the key's entries before and after the write, so that no read
// racing with the write can leave an old value behind.

func (s *cachedKeys) CreateKeyVersion(ctx context.Context, k *Key, kv *KeyVersion) error {
	defer s.c.invalidateKey(k.VaultName, k.Name)
	s.c.invalidateKey(k.VaultName, k.Name)
	return s.KeyStore.CreateKeyVersion(ctx, k, kv)
}

func (s *cachedKeys) UpdateKeyVersion(ctx context.Context, kv *KeyVersion) error {
	defer s.c.invalidateKey(kv.VaultName, kv.KeyName)
	s.c.invalidateKey(kv.VaultName, kv.KeyName)
	return s.KeyStore.UpdateKeyVersion(ctx, kv)
}

func (s *cachedKeys) UpdateKey(ctx context.Context, k *Key) error {
	defer s.c.invalidateKey(k.VaultName, k.Name)
	s.c.invalidateKey(k.VaultName, k.Name)
	return s.KeyStore.UpdateKey(ctx, k)
}

func (s *cachedKeys) PurgeKey(ctx context.Context, vault, name string) error {
	defer s.c.invalidateKey(vault, name)
	s.c.invalidateKey(vault, name)
	return s.KeyStore.PurgeKey(ctx, vault, name)
}
