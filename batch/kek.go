package batch

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
)

// KeyError is a failure to reach or use a KEK. Definite failures (the vault
// refused: no permission, key disabled, expired, deleted, identity gone)
// lock an account at once; other failures (timeouts, 5xx, 429) are ridden
// out for a grace period.
type KeyError struct {
	Definite bool
	// Reason is a sentence for users: what is wrong with the key and what to
	// do.
	Reason string
	Err    error
}

func (e *KeyError) Error() string {
	if e.Err != nil {
		return e.Reason + ": " + e.Err.Error()
	}
	return e.Reason
}

func (e *KeyError) Unwrap() error { return e.Err }

// Sealer seals platform keys under the server's root key.
type Sealer interface {
	Seal(plaintext, aad []byte) []byte
	Open(sealed, aad []byte) ([]byte, error)
}

// PlatformKEK is the server's platform key ring for keySource
// Microsoft.Batch: AES-256-GCM keys, sealed under the root key in the store.
// Rotate adds a new active key; older keys stay to unwrap what they wrapped.
type PlatformKEK struct {
	store  PlatformKeyStore
	sealer Sealer

	mu     sync.RWMutex
	keys   map[string]cipher.AEAD
	active string
}

// NewPlatformKEK loads the key ring, creating its first key if it is empty.
func NewPlatformKEK(ctx context.Context, store PlatformKeyStore, sealer Sealer) (*PlatformKEK, error) {
	p := &PlatformKEK{store: store, sealer: sealer, keys: map[string]cipher.AEAD{}}
	stored, err := store.PlatformKeys(ctx)
	if err != nil {
		return nil, err
	}
	for _, k := range stored {
		raw, err := sealer.Open(k.Sealed, platformAAD(k.ID))
		if err != nil {
			return nil, fmt.Errorf("open platform key %s: %w", k.ID, err)
		}
		aead, err := newGCM(raw)
		if err != nil {
			return nil, err
		}
		p.keys[k.ID] = aead
		if k.Active {
			p.active = k.ID
		}
	}
	if p.active == "" {
		if _, err := p.Rotate(ctx); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func platformAAD(id string) []byte { return []byte("custody/batch/platform-key/" + id) }

// PlatformKeyAAD is the associated data a platform key is sealed with (a
// root key migration re-seals it).
func PlatformKeyAAD(id string) []byte { return platformAAD(id) }

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Rotate adds a new active platform key and returns its id.
func (p *PlatformKEK) Rotate(ctx context.Context) (string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	sum := sha256.Sum256(raw)
	id := "platform-" + hex.EncodeToString(sum[:8])
	if err := p.store.AddPlatformKey(ctx, &PlatformKey{ID: id, Sealed: p.sealer.Seal(raw, platformAAD(id)), Active: true, CreatedAt: time.Now().UTC()}); err != nil {
		return "", err
	}
	aead, err := newGCM(raw)
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	p.keys[id], p.active = aead, id
	p.mu.Unlock()
	return id, nil
}

// ActiveID returns the id of the key new wraps use.
func (p *PlatformKEK) ActiveID() string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.active
}

func dekAAD(accountUID string) []byte { return []byte("custody/batch/dek/" + accountUID) }

// Wrap wraps dek under the active platform key, bound to the account.
func (p *PlatformKEK) Wrap(_ context.Context, accountUID string, dek []byte) (WrappedDEK, error) {
	p.mu.RLock()
	id, aead := p.active, p.keys[p.active]
	p.mu.RUnlock()
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return WrappedDEK{}, err
	}
	ct := aead.Seal(nonce, nonce, dek, dekAAD(accountUID))
	return WrappedDEK{KeySource: KeySourceBatch, KeyID: id, Algorithm: "A256GCM", Ciphertext: ct}, nil
}

// Unwrap unwraps a DEK wrapped by Wrap.
func (p *PlatformKEK) Unwrap(_ context.Context, accountUID string, w WrappedDEK) ([]byte, error) {
	p.mu.RLock()
	aead := p.keys[w.KeyID]
	p.mu.RUnlock()
	if aead == nil {
		return nil, &KeyError{Definite: true, Reason: fmt.Sprintf("the platform key %s that wrapped this account's key is not in the key ring", w.KeyID)}
	}
	ns := aead.NonceSize()
	if len(w.Ciphertext) < ns+aead.Overhead() {
		return nil, &KeyError{Definite: true, Reason: "the wrapped account key is truncated"}
	}
	dek, err := aead.Open(nil, w.Ciphertext[:ns], w.Ciphertext[ns:], dekAAD(accountUID))
	if err != nil {
		return nil, &KeyError{Definite: true, Reason: "the wrapped account key failed authentication", Err: errors.New("platform unwrap")}
	}
	return dek, nil
}
