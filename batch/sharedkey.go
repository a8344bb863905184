package batch

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"slices"
	"strings"

	"custody"
)

// Data-plane authentication modes of an account (allowedAuthenticationModes).
const (
	AuthModeSharedKey = "SharedKey"
	AuthModeAAD       = "AAD"
	AuthModeTaskToken = "TaskAuthenticationToken"
)

// DefaultAuthModes are the modes of an account that names none.
var DefaultAuthModes = []string{AuthModeSharedKey, AuthModeAAD, AuthModeTaskToken}

// SharedKeySize is the size of a shared key in bytes: 64 random bytes, 88
// characters in base64, as Azure's account keys.
const SharedKeySize = 64

// Allows reports whether the account accepts data-plane requests
// authenticated with mode.
func (a *Account) Allows(mode string) bool {
	if a.AuthModes == nil {
		return true
	}
	return slices.Contains(a.AuthModes, mode)
}

// Modes returns the account's allowed authentication modes.
func (a *Account) Modes() []string {
	if a.AuthModes == nil {
		return append([]string(nil), DefaultAuthModes...)
	}
	return append([]string{}, a.AuthModes...)
}

// CheckAuthModes returns modes in Azure's spelling, without duplicates, or
// InvalidAuthenticationMode for a mode that is not one of the three.
func CheckAuthModes(modes []string) ([]string, error) {
	out := []string{}
	for _, m := range modes {
		c := ""
		for _, k := range DefaultAuthModes {
			if strings.EqualFold(strings.TrimSpace(m), k) {
				c = k
			}
		}
		if c == "" {
			return nil, custody.Errorf(custody.KindInvalid, "InvalidAuthenticationMode",
				"allowedAuthenticationModes contains '%s', which is not an authentication mode: use SharedKey, AAD or TaskAuthenticationToken.", m)
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

// SharedKeys are the two shared keys of an account, base64-encoded, as
// listKeys and regenerateKeys answer them.
type SharedKeys struct {
	AccountName string
	Primary     string
	Secondary   string
}

// Key names of regenerateKeys.
const (
	KeyPrimary   = "Primary"
	KeySecondary = "Secondary"
)

func sharedKeysAAD(uid string) []byte { return []byte("custody/batch/shared-keys/" + uid) }

// SharedKeysAAD is the associated data an account's shared keys are sealed
// with (a root key migration re-seals them).
func SharedKeysAAD(uid string) []byte { return sharedKeysAAD(uid) }

// newSharedKeys returns a fresh primary and secondary key.
func newSharedKeys() ([]byte, error) {
	raw := make([]byte, 2*SharedKeySize)
	if _, err := rand.Read(raw); err != nil {
		return nil, custody.Internal(err, "generate shared keys")
	}
	return raw, nil
}

func (s *Service) sealKeys(uid string, raw []byte) ([]byte, error) {
	if s.Sealer == nil {
		return nil, custody.Internal(nil, "shared keys: the batch service has no sealer")
	}
	return s.Sealer.Seal(raw, sharedKeysAAD(uid)), nil
}

// openKeys returns the primary and secondary key of a, generating and
// storing them first if the account has none yet (accounts created before
// shared keys existed).
func (s *Service) openKeys(ctx context.Context, a *Account) (primary, secondary []byte, err error) {
	if s.Sealer == nil {
		return nil, nil, custody.Internal(nil, "shared keys: the batch service has no sealer")
	}
	if len(a.SharedKeys) == 0 {
		raw, err := newSharedKeys()
		if err != nil {
			return nil, nil, err
		}
		sealed, err := s.sealKeys(a.UID, raw)
		if err != nil {
			return nil, nil, err
		}
		err = s.Accounts.UpdateSharedKeys(ctx, a.Name, a.UID, nil, sealed)
		if custody.ErrorKind(err) == custody.KindConflict {
			// Another request generated them first: use those.
			cur, err := s.Accounts.Account(ctx, a.Name)
			if err != nil {
				return nil, nil, err
			}
			if cur.UID != a.UID || len(cur.SharedKeys) == 0 {
				return nil, nil, custody.Errorf(custody.KindConflict, "AccountChangedConcurrently", "Batch account %q was changed by another request; retry.", a.Name)
			}
			a.SharedKeys = cur.SharedKeys
			return s.openKeys(ctx, a)
		}
		if err != nil {
			return nil, nil, err
		}
		a.SharedKeys = sealed
	}
	raw, err := s.Sealer.Open(a.SharedKeys, sharedKeysAAD(a.UID))
	if err != nil || len(raw) != 2*SharedKeySize {
		return nil, nil, custody.Internal(err, "open the shared keys of batch account %q", a.Name)
	}
	return raw[:SharedKeySize], raw[SharedKeySize:], nil
}

func sharedKeysOut(a *Account, primary, secondary []byte) *SharedKeys {
	return &SharedKeys{AccountName: a.Name, Primary: base64.StdEncoding.EncodeToString(primary), Secondary: base64.StdEncoding.EncodeToString(secondary)}
}

func sharedKeyDisabled(a *Account) error {
	return custody.Errorf(custody.KindInvalid, "SharedKeyAuthenticationModeDisabled",
		"Batch account %q does not allow SharedKey authentication (allowedAuthenticationModes is %s), so it has no keys to list or regenerate. Add SharedKey to allowedAuthenticationModes, or authenticate with Microsoft Entra ID.",
		a.Name, "["+strings.Join(a.Modes(), ", ")+"]")
}

// ListKeys returns the account's shared keys. An account that does not
// allow SharedKey authentication refuses (400).
func (s *Service) ListKeys(ctx context.Context, a *Account) (*SharedKeys, error) {
	if !a.Allows(AuthModeSharedKey) {
		return nil, sharedKeyDisabled(a)
	}
	p, sec, err := s.openKeys(ctx, a)
	if err != nil {
		return nil, err
	}
	return sharedKeysOut(a, p, sec), nil
}

// RegenerateKey replaces the primary or secondary key (keyName, any case)
// with a new random key and returns both. Signatures made with the old key
// fail from the moment it returns; the other key is unchanged.
func (s *Service) RegenerateKey(ctx context.Context, a *Account, keyName string) (*SharedKeys, error) {
	which := -1
	switch {
	case strings.EqualFold(keyName, KeyPrimary):
		which = 0
	case strings.EqualFold(keyName, KeySecondary):
		which = 1
	default:
		return nil, custody.Errorf(custody.KindInvalid, "InvalidParameter",
			"keyName '%s' is not valid: use Primary or Secondary.", keyName)
	}
	if !a.Allows(AuthModeSharedKey) {
		return nil, sharedKeyDisabled(a)
	}
	mu := s.accountLock(a.Name)
	mu.Lock()
	defer mu.Unlock()
	cur, err := s.Accounts.Account(ctx, a.Name)
	if err != nil {
		return nil, err
	}
	if cur.UID != a.UID {
		return nil, custody.Errorf(custody.KindConflict, "AccountChangedConcurrently", "Batch account %q was replaced by another request; retry.", a.Name)
	}
	p, sec, err := s.openKeys(ctx, cur)
	if err != nil {
		return nil, err
	}
	fresh, err := newSharedKeys()
	if err != nil {
		return nil, err
	}
	raw := append(append([]byte{}, p...), sec...)
	copy(raw[which*SharedKeySize:(which+1)*SharedKeySize], fresh[:SharedKeySize])
	sealed, err := s.sealKeys(cur.UID, raw)
	if err != nil {
		return nil, err
	}
	if err := s.Accounts.UpdateSharedKeys(ctx, cur.Name, cur.UID, cur.SharedKeys, sealed); err != nil {
		return nil, err
	}
	return sharedKeysOut(cur, raw[:SharedKeySize], raw[SharedKeySize:]), nil
}

// VerifySharedKey reports whether mac is one of the signatures sign(key)
// returns for one of the account's two keys. sign is the signature scheme
// of the wire protocol; the keys are not handed out otherwise. Every
// comparison runs in constant time.
func (s *Service) VerifySharedKey(ctx context.Context, a *Account, mac []byte, sign func(key []byte) [][]byte) (bool, error) {
	p, sec, err := s.openKeys(ctx, a)
	if err != nil {
		return false, err
	}
	ok := false
	for _, k := range [][]byte{p, sec} {
		for _, m := range sign(k) {
			if subtle.ConstantTimeCompare(m, mac) == 1 {
				ok = true
			}
		}
	}
	return ok, nil
}

// SetAuthModes replaces the account's allowed authentication modes. A
// locked account refuses, like every change.
func (s *Service) SetAuthModes(ctx context.Context, name string, modes []string) (*Account, error) {
	modes, err := CheckAuthModes(modes)
	if err != nil {
		return nil, err
	}
	mu := s.accountLock(name)
	mu.Lock()
	defer mu.Unlock()
	a, err := s.Accounts.Account(ctx, name)
	if err != nil {
		return nil, err
	}
	if a.Key.State == KeyInaccessible {
		return nil, lockedError(a)
	}
	if a.AuthModes != nil && slices.Equal(a.AuthModes, modes) {
		return a, nil
	}
	a.AuthModes, a.UpdatedAt = modes, s.now().UTC()
	if err := s.Accounts.UpdateAccount(ctx, a, a.Key.Wrapped.KeyID); err != nil {
		return nil, err
	}
	return a, nil
}
