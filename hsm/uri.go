// Package hsm reaches a PKCS#11 token (a hardware security module, or
// SoftHSM2): it parses RFC 7512 PKCS#11 URIs, holds the server's root key in
// the token and derives the sealing key from it, and generates and uses vault
// keys (RSA and EC) whose private parts never leave the token.
//
// The root key is a 256-bit generic secret (CKK_GENERIC_SECRET) generated in
// the token, sensitive and not extractable. The server never sees it: at
// start it asks the token for HMAC-SHA256 (CKM_SHA256_HMAC) of a fixed
// label, a key derivation in the form of NIST SP 800-108 (counter mode), and
// the 32 bytes it gets are the AES-256-GCM key the secret package seals with,
// held in memory only. Every PKCS#11 token offers CKM_SHA256_HMAC, and the
// derivation needs no wrapped key stored beside the database: replicas on
// one token derive the same key.
//
// Vault keys are token objects (CKA_TOKEN) whose private halves are
// CKA_SENSITIVE and not CKA_EXTRACTABLE. Decryption uses CKM_RSA_PKCS_OAEP
// (SHA-1 or SHA-256) or CKM_RSA_PKCS; a token that refuses OAEP with SHA-256
// (SoftHSM2 2.6 accepts only SHA-1) decrypts with the raw private-key
// operation CKM_RSA_X_509 in the token and the OAEP padding is checked in
// memory. Signatures use CKM_RSA_PKCS (DigestInfo prefix), CKM_RSA_PKCS_PSS
// and CKM_ECDSA.
package hsm

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// URI is a parsed PKCS#11 URI (RFC 7512), the parts Custody reads:
//
//	pkcs11:token=custody;object=custody-root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=/etc/custody/pin
type URI struct {
	// ModulePath is the PKCS#11 library to load (query attribute
	// module-path).
	ModulePath string
	// Token and Serial select the token by label or serial number; SlotID
	// by slot (slot-id). At least one is needed.
	Token, Serial string
	SlotID        *uint
	// Object is the root key's label (CKA_LABEL).
	Object string
	// PinValue is the user PIN given inline (pin-value); PinSource names a
	// file that holds it (pin-source, a path or a file: URI).
	PinValue, PinSource string
}

// IsURI reports whether s is meant as a PKCS#11 URI.
func IsURI(s string) bool { return strings.HasPrefix(strings.ToLower(s), "pkcs11:") }

// ParseURI parses a PKCS#11 URI.
func ParseURI(s string) (*URI, error) {
	if !IsURI(s) {
		return nil, errors.New("a PKCS#11 URI starts with pkcs11:")
	}
	rest := s[len("pkcs11:"):]
	path, query, _ := strings.Cut(rest, "?")
	u := &URI{}
	set := func(name, raw string, inQuery bool) error {
		v, err := url.PathUnescape(raw)
		if err != nil {
			return fmt.Errorf("PKCS#11 URI attribute %s: bad percent-encoding", name)
		}
		switch strings.ToLower(name) {
		case "token":
			u.Token = v
		case "serial":
			u.Serial = v
		case "object":
			u.Object = v
		case "slot-id":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return fmt.Errorf("PKCS#11 URI slot-id %q is not a number", v)
			}
			id := uint(n)
			u.SlotID = &id
		case "module-path":
			u.ModulePath = v
		case "pin-value":
			u.PinValue = v
		case "pin-source":
			u.PinSource = v
		case "type", "manufacturer", "model", "library-manufacturer", "library-description", "library-version", "slot-manufacturer", "slot-description", "id", "module-name":
			// Accepted and not needed to find the token or the object.
		default:
			where := "path"
			if inQuery {
				where = "query"
			}
			return fmt.Errorf("PKCS#11 URI %s attribute %q is not known; use token, serial, slot-id, object, module-path, pin-source or pin-value", where, name)
		}
		return nil
	}
	for _, part := range strings.Split(path, ";") {
		if part == "" {
			continue
		}
		name, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("PKCS#11 URI attribute %q has no value", part)
		}
		if err := set(name, v, false); err != nil {
			return nil, err
		}
	}
	for _, part := range strings.Split(query, "&") {
		if part == "" {
			continue
		}
		name, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("PKCS#11 URI attribute %q has no value", part)
		}
		if err := set(name, v, true); err != nil {
			return nil, err
		}
	}
	switch {
	case u.ModulePath == "":
		return nil, errors.New("the PKCS#11 URI names no module: add ?module-path=/path/to/the/pkcs11/library.so")
	case u.Token == "" && u.Serial == "" && u.SlotID == nil:
		return nil, errors.New("the PKCS#11 URI names no token: add token=LABEL (or serial=... or slot-id=...)")
	case u.Object == "":
		return nil, errors.New("the PKCS#11 URI names no key: add object=LABEL, the root key's label in the token")
	case u.PinValue == "" && u.PinSource == "":
		return nil, errors.New("the PKCS#11 URI gives no PIN: add pin-source=FILE (a file holding the user PIN) or pin-value=PIN")
	}
	return u, nil
}

// String returns the URI without the PIN value, for messages and logs.
func (u *URI) String() string {
	var path []string
	if u.Token != "" {
		path = append(path, "token="+url.PathEscape(u.Token))
	}
	if u.Serial != "" {
		path = append(path, "serial="+url.PathEscape(u.Serial))
	}
	if u.SlotID != nil {
		path = append(path, "slot-id="+strconv.FormatUint(uint64(*u.SlotID), 10))
	}
	path = append(path, "object="+url.PathEscape(u.Object))
	q := []string{"module-path=" + escape(u.ModulePath)}
	if u.PinSource != "" {
		q = append(q, "pin-source="+escape(u.PinSource))
	}
	return "pkcs11:" + strings.Join(path, ";") + "?" + strings.Join(q, "&")
}

// escape percent-encodes v for a query attribute, keeping slashes and colons.
func escape(v string) string {
	return strings.NewReplacer("%2F", "/", "%3A", ":").Replace(url.PathEscape(v))
}

// pin returns the user PIN.
func (u *URI) pin() (string, error) {
	if u.PinValue != "" {
		return u.PinValue, nil
	}
	p := strings.TrimPrefix(u.PinSource, "file:")
	if strings.HasPrefix(p, "//") {
		p = p[2:]
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("PKCS#11 PIN source: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
