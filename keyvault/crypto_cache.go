package keyvault

import (
	"bytes"
	"crypto"
	"log/slog"
	"strings"
	"sync"
)

// keysState is the in-memory state of the keys data plane.
type keysState struct {
	keys  keyCache
	audit auditQueue
}

func (s *Service) state() *keysState {
	s.stateOnce.Do(func() {
		s.st = &keysState{keys: keyCache{m: map[string]*openedKey{}}}
	})
	return s.st
}

func (s *Service) cache() *keyCache { return &s.state().keys }

func (s *Service) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// keyCache holds opened private keys, so that a crypto operation does not
// unseal and parse (and, for RSA, precompute) the key every time. An entry
// is used only if the sealed material read from the store for this request
// is byte-for-byte the one the entry was opened from, so the cache can never
// serve a key the store no longer holds under that version; entries are
// also dropped when their key is deleted or purged.
type keyCache struct {
	mu sync.RWMutex
	m  map[string]*openedKey
}

type openedKey struct {
	sealed []byte
	priv   crypto.Signer
}

// maxOpenedKeys bounds the cache; past it, an arbitrary entry is evicted.
const maxOpenedKeys = 4096

func cacheKey(vault, key, version string) string {
	return strings.ToLower(vault) + "/" + strings.ToLower(key) + "/" + strings.ToLower(version)
}

func (c *keyCache) get(vault, key, version string, sealed []byte) crypto.Signer {
	c.mu.RLock()
	e := c.m[cacheKey(vault, key, version)]
	c.mu.RUnlock()
	if e == nil || !bytes.Equal(e.sealed, sealed) {
		return nil
	}
	return e.priv
}

func (c *keyCache) put(vault, key, version string, sealed []byte, priv crypto.Signer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxOpenedKeys {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[cacheKey(vault, key, version)] = &openedKey{sealed: bytes.Clone(sealed), priv: priv}
}

// dropVersion forgets one version of a key.
func (c *keyCache) dropVersion(vault, key, version string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, cacheKey(vault, key, version))
}

// dropKey forgets every version of a key.
func (c *keyCache) dropKey(vault, key string) {
	prefix := strings.ToLower(vault) + "/" + strings.ToLower(key) + "/"
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if strings.HasPrefix(k, prefix) {
			delete(c.m, k)
		}
	}
}

// dropVault forgets every key of a vault.
func (c *keyCache) dropVault(vault string) {
	prefix := strings.ToLower(vault) + "/"
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if strings.HasPrefix(k, prefix) {
			delete(c.m, k)
		}
	}
}

// ForgetVault drops cached key material of a vault; vault deletion and
// purge call it.
func (s *Service) ForgetVault(name string) { s.cache().dropVault(name) }
