// Package secret seals server-side secrets (token signing keys today, key
// vault key material later) under the server's root key with AES-256-GCM, so
// that the database never holds them in plaintext.
//
// A sealed value is self-describing:
//
//	version (1 byte, 0x01) | root key id (4 bytes) | nonce (12 bytes) | ciphertext+tag
//
// The root key id is the first four bytes of SHA-256 of the key, so a value
// sealed under another root key is refused with a clear error instead of
// failing as a corrupt ciphertext.
package secret

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const (
	formatV1 = 0x01
	// RootKeyFile is the file in the data directory that holds the root key.
	RootKeyFile = "root.key"
	// RootKeyEnv names the environment variable that can carry the root key
	// (base64, 32 bytes) instead of the file.
	RootKeyEnv = "CUSTODY_ROOT_KEY"
)

// ErrWrongRootKey is returned when a value was sealed under a different root
// key than the one loaded.
var ErrWrongRootKey = errors.New("secret: sealed under a different root key; start the server with the root key it was created with")

// Sealer seals and opens values under one root key. The associated data binds
// a sealed value to where it is stored; opening with other associated data
// fails.
type Sealer struct {
	aead cipher.AEAD
	id   [4]byte
}

// NewSealer returns a Sealer for a 32-byte root key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("secret: root key must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	s := &Sealer{aead: aead}
	sum := sha256.Sum256(key)
	copy(s.id[:], sum[:4])
	return s, nil
}

// Seal encrypts plaintext bound to aad.
func (s *Sealer) Seal(plaintext, aad []byte) []byte {
	out := make([]byte, 0, 1+4+12+len(plaintext)+16)
	out = append(out, formatV1)
	out = append(out, s.id[:]...)
	nonce := make([]byte, 12)
	if _, err := rand.Read(nonce); err != nil {
		panic("secret: no randomness: " + err.Error())
	}
	out = append(out, nonce...)
	return s.aead.Seal(out, nonce, plaintext, aad)
}

// Open decrypts a value produced by Seal with the same aad.
func (s *Sealer) Open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < 1+4+12+16 || sealed[0] != formatV1 {
		return nil, errors.New("secret: not a sealed value of a known format")
	}
	if !bytes.Equal(sealed[1:5], s.id[:]) {
		return nil, ErrWrongRootKey
	}
	pt, err := s.aead.Open(nil, sealed[5:17], sealed[17:], aad)
	if err != nil {
		return nil, errors.New("secret: sealed value failed authentication (tampered, or stored under another name)")
	}
	return pt, nil
}

// LoadRootKey finds the root key: from keyFile if given, else from the
// CUSTODY_ROOT_KEY environment variable, else from dataDir/root.key, which is
// created (mode 0600) on first use.
func LoadRootKey(dataDir, keyFile string) ([]byte, error) {
	if keyFile != "" {
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("root key file: %w", err)
		}
		return decodeKey(b, keyFile)
	}
	if v := os.Getenv(RootKeyEnv); v != "" {
		return decodeKey([]byte(v), RootKeyEnv)
	}
	path := filepath.Join(dataDir, RootKeyFile)
	b, err := os.ReadFile(path)
	if err == nil {
		return decodeKey(b, path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
		return nil, err
	}
	return key, f.Sync()
}

func decodeKey(b []byte, from string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("root key from %s must be 32 bytes in base64", from)
	}
	return key, nil
}
