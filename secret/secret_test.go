package secret_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"custody/secret"
)

func newSealer(t *testing.T) *secret.Sealer {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	s, err := secret.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealOpen(t *testing.T) {
	s := newSealer(t)
	sealed := s.Seal([]byte("private key bytes"), []byte("where"))
	if bytes.Contains(sealed, []byte("private key bytes")) {
		t.Fatal("sealed value holds the plaintext")
	}
	got, err := s.Open(sealed, []byte("where"))
	if err != nil || string(got) != "private key bytes" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := s.Open(sealed, []byte("elsewhere")); err == nil {
		t.Fatal("opened with other associated data")
	}
	tampered := append([]byte(nil), sealed...)
	tampered[len(tampered)-1] ^= 1
	if _, err := s.Open(tampered, []byte("where")); err == nil {
		t.Fatal("opened a tampered value")
	}
	if _, err := newSealer(t).Open(sealed, []byte("where")); !errors.Is(err, secret.ErrWrongRootKey) {
		t.Fatalf("other root key: %v, want ErrWrongRootKey", err)
	}
	if _, err := s.Open([]byte{1, 2, 3}, nil); err == nil {
		t.Fatal("opened a short value")
	}
}

func TestLoadRootKey(t *testing.T) {
	dir := t.TempDir()
	k1, err := secret.LoadRootKey(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, secret.RootKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Fatalf("root key file mode %o, want 600", got)
	}
	k2, err := secret.LoadRootKey(dir, "")
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second load gave another key (%v)", err)
	}
	other := make([]byte, 32)
	rand.Read(other)
	t.Setenv(secret.RootKeyEnv, base64.StdEncoding.EncodeToString(other))
	k3, err := secret.LoadRootKey(dir, "")
	if err != nil || !bytes.Equal(k3, other) {
		t.Fatalf("environment key not used (%v)", err)
	}
	file := filepath.Join(t.TempDir(), "k")
	os.WriteFile(file, []byte("not base64!"), 0o600)
	if _, err := secret.LoadRootKey(dir, file); err == nil {
		t.Fatal("a malformed key file was accepted")
	}
}
