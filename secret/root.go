package secret

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"custody/hsm"
)

// Root is the server's root of trust: the Sealer, and the PKCS#11 token
// when the root key lives in one.
type Root struct {
	*Sealer
	// Token is the token holding the root key, nil for a root key in a
	// file or the environment. Vault keys of type RSA-HSM and EC-HSM live
	// in it.
	Token *hsm.Token
	// Where says where the root key is, for messages (never the key, nor
	// a PIN).
	Where string
}

// Close releases the token, if any.
func (r *Root) Close() {
	if r != nil && r.Token != nil {
		r.Token.Close()
	}
}

// LoadRoot opens the root key that spec names:
//
//   - "": the CUSTODY_ROOT_KEY environment variable, else {dataDir}/root.key,
//     created on first use;
//   - a PKCS#11 URI (pkcs11:...): a key in a token, which must exist
//     (InitTokenRoot creates it);
//   - anything else, optionally prefixed file:, a file holding the key in
//     base64. With create, a file that does not exist is created with a new
//     key (mode 0600).
func LoadRoot(dataDir, spec string, create bool) (*Root, error) {
	if hsm.IsURI(spec) {
		u, err := hsm.ParseURI(spec)
		if err != nil {
			return nil, fmt.Errorf("root key: %w", err)
		}
		tok, err := hsm.Open(u)
		if err != nil {
			return nil, fmt.Errorf("root key: %w", err)
		}
		key, err := tok.SealingKey()
		if err != nil {
			tok.Close()
			return nil, fmt.Errorf("root key: %w", err)
		}
		defer clear(key)
		s, err := NewSealer(key)
		if err != nil {
			tok.Close()
			return nil, err
		}
		return &Root{Sealer: s, Token: tok, Where: u.String()}, nil
	}
	if spec == "" {
		key, err := LoadRootKey(dataDir, "")
		if err != nil {
			return nil, err
		}
		defer clear(key)
		s, err := NewSealer(key)
		if err != nil {
			return nil, err
		}
		where := filepath.Join(dataDir, RootKeyFile)
		if os.Getenv(RootKeyEnv) != "" {
			where = RootKeyEnv
		}
		return &Root{Sealer: s, Where: where}, nil
	}
	path := strings.TrimPrefix(spec, "file:")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) && create {
		if err := writeNewKey(path); err != nil {
			return nil, fmt.Errorf("root key file: %w", err)
		}
	}
	key, err := LoadRootKey(dataDir, path)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	s, err := NewSealer(key)
	if err != nil {
		return nil, err
	}
	return &Root{Sealer: s, Where: path}, nil
}

// InitTokenRoot generates the root key in the token a PKCS#11 URI names,
// unless it exists; it reports whether it created it.
func InitTokenRoot(uri string) (bool, error) {
	u, err := hsm.ParseURI(uri)
	if err != nil {
		return false, err
	}
	tok, err := hsm.Open(u)
	if err != nil {
		return false, err
	}
	defer tok.Close()
	return tok.InitRoot()
}

func writeNewKey(path string) error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	defer clear(key)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
		return err
	}
	return f.Sync()
}

// ID returns the four bytes that name the Sealer's key in what it seals.
func (s *Sealer) ID() [4]byte { return s.id }

// SealedUnder reports whether sealed names the key of s.
func (s *Sealer) SealedUnder(sealed []byte) bool {
	return len(sealed) >= 5 && sealed[0] == formatV1 && bytes.Equal(sealed[1:5], s.id[:])
}

// Resealer returns a function that re-seals a value from one root key to
// another: a value already under to is checked and kept as it is (a
// migration run again after a crash), any other is opened with from and
// sealed with to. inspect, if set, sees every opened value first and may
// refuse it.
func Resealer(from, to *Sealer, inspect func(plain []byte) error) func(sealed, aad []byte) ([]byte, error) {
	return func(sealed, aad []byte) ([]byte, error) {
		var plain []byte
		var err error
		if to.SealedUnder(sealed) {
			plain, err = to.Open(sealed, aad)
		} else {
			plain, err = from.Open(sealed, aad)
		}
		if err != nil {
			return nil, err
		}
		defer clear(plain)
		if inspect != nil {
			if err := inspect(plain); err != nil {
				return nil, err
			}
		}
		if to.SealedUnder(sealed) {
			return sealed, nil
		}
		return to.Seal(plain, aad), nil
	}
}
