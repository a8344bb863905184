package keyvault

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"

	"custody"
)

// Bytes is a byte string that travels as base64url without padding, as every
// Key Vault byte field does. Decoding also accepts padded base64url and
// standard base64, which some clients send.
type Bytes []byte

// MarshalJSON encodes b as unpadded base64url.
func (b Bytes) MarshalJSON() ([]byte, error) {
	out := make([]byte, 0, base64.RawURLEncoding.EncodedLen(len(b))+2)
	out = append(out, '"')
	out = base64.RawURLEncoding.AppendEncode(out, b)
	return append(out, '"'), nil
}

// UnmarshalJSON decodes a base64url (or base64) string; null leaves b nil.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*b = nil
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return errors.New("must be a base64url string")
	}
	v, err := decodeB64(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

func decodeB64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "+/") {
		s = strings.NewReplacer("+", "-", "/", "_").Replace(s)
	}
	v, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("is not valid base64url")
	}
	return v, nil
}

// JSONWebKey is Key Vault's JsonWebKey: the public parts of a key in
// responses, and the whole key (private parts included) in import requests.
// It is written here rather than taken from a JOSE library because Key Vault
// uses key types ("RSA-HSM", "EC-HSM") and fields (key_ops, key_hsm) that
// general JOSE libraries refuse.
type JSONWebKey struct {
	Kid    string   `json:"kid,omitempty"`
	Kty    string   `json:"kty,omitempty"`
	KeyOps []string `json:"key_ops,omitempty"`
	// RSA.
	N  Bytes `json:"n,omitempty"`
	E  Bytes `json:"e,omitempty"`
	D  Bytes `json:"d,omitempty"`
	DP Bytes `json:"dp,omitempty"`
	DQ Bytes `json:"dq,omitempty"`
	QI Bytes `json:"qi,omitempty"`
	P  Bytes `json:"p,omitempty"`
	Q  Bytes `json:"q,omitempty"`
	// Symmetric.
	K Bytes `json:"k,omitempty"`
	// HSM import blob (bring your own key); not supported.
	T Bytes `json:"key_hsm,omitempty"`
	// EC.
	Crv string `json:"crv,omitempty"`
	X   Bytes  `json:"x,omitempty"`
	Y   Bytes  `json:"y,omitempty"`
}

// Key types. An "-HSM" key lives in the server's hardware security module
// (see HSM); the others are software keys sealed under the root key.
const (
	KtyRSA    = "RSA"
	KtyRSAHSM = "RSA-HSM"
	KtyEC     = "EC"
	KtyECHSM  = "EC-HSM"
)

// Curves.
const (
	CrvP256 = "P-256"
	CrvP384 = "P-384"
	CrvP521 = "P-521"
)

// Key operations, as key_ops names them.
const (
	OpEncrypt   = "encrypt"
	OpDecrypt   = "decrypt"
	OpSign      = "sign"
	OpVerify    = "verify"
	OpWrapKey   = "wrapKey"
	OpUnwrapKey = "unwrapKey"
)

var rsaOps = []string{OpEncrypt, OpDecrypt, OpSign, OpVerify, OpWrapKey, OpUnwrapKey}
var ecOps = []string{OpSign, OpVerify}

func baseKty(kty string) string { return strings.TrimSuffix(kty, "-HSM") }

func normalizeKty(kty string) (string, bool) {
	for _, k := range []string{KtyRSA, KtyRSAHSM, KtyEC, KtyECHSM} {
		if strings.EqualFold(kty, k) {
			return k, true
		}
	}
	return "", false
}

func curve(crv string) (elliptic.Curve, string, bool) {
	switch strings.ToUpper(crv) {
	case CrvP256:
		return elliptic.P256(), CrvP256, true
	case CrvP384:
		return elliptic.P384(), CrvP384, true
	case CrvP521:
		return elliptic.P521(), CrvP521, true
	}
	return nil, "", false
}

func badKey(format string, args ...any) error {
	return custody.Errorf(custody.KindInvalid, "BadParameter", format, args...)
}

// ParseJWK parses a JSON Web Key with its private parts, as an import request
// carries it.
func ParseJWK(data []byte) (*JSONWebKey, crypto.Signer, error) {
	var j JSONWebKey
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, nil, badKey("The key is not a valid JSON Web Key: %v.", err)
	}
	priv, err := j.PrivateKey()
	if err != nil {
		return nil, nil, err
	}
	return &j, priv, nil
}

// PrivateKey returns the private key j describes, checking that its parts are
// consistent. Only RSA and EC keys with private parts are accepted.
func (j *JSONWebKey) PrivateKey() (crypto.Signer, error) {
	kty, ok := normalizeKty(j.Kty)
	if !ok {
		return nil, badKey("The key type (kty) %q is not supported; import an RSA, RSA-HSM, EC or EC-HSM key.", j.Kty)
	}
	if len(j.T) > 0 {
		return nil, badKey("Importing a key as an HSM blob (key_hsm) is not supported; send the key's private parts instead.")
	}
	switch baseKty(kty) {
	case KtyRSA:
		return j.rsaKey()
	default:
		return j.ecKey()
	}
}

func (j *JSONWebKey) rsaKey() (*rsa.PrivateKey, error) {
	if len(j.N) == 0 || len(j.E) == 0 {
		return nil, badKey("The RSA key lacks its modulus (n) or public exponent (e).")
	}
	if len(j.D) == 0 || len(j.P) == 0 || len(j.Q) == 0 {
		return nil, badKey("The RSA key lacks its private parts: d, p and q are required to import it.")
	}
	if len(j.E) > 4 {
		return nil, badKey("The RSA public exponent (e) is too large.")
	}
	e := 0
	for _, b := range j.E {
		e = e<<8 | int(b)
	}
	n := new(big.Int).SetBytes(j.N)
	bits := n.BitLen()
	if bits != 2048 && bits != 3072 && bits != 4096 {
		return nil, badKey("The RSA key has a %d-bit modulus; import a key of 2048, 3072 or 4096 bits.", bits)
	}
	if e < 3 || e%2 == 0 {
		return nil, badKey("The RSA public exponent (e) %d is not valid.", e)
	}
	priv := &rsa.PrivateKey{
		PublicKey: rsa.PublicKey{N: n, E: e},
		D:         new(big.Int).SetBytes(j.D),
		Primes:    []*big.Int{new(big.Int).SetBytes(j.P), new(big.Int).SetBytes(j.Q)},
	}
	if err := priv.Validate(); err != nil {
		return nil, badKey("The RSA key's parts are inconsistent (%v); check n, e, d, p and q.", err)
	}
	priv.Precompute()
	return priv, nil
}

func (j *JSONWebKey) ecKey() (*ecdsa.PrivateKey, error) {
	c, name, ok := curve(j.Crv)
	if !ok {
		return nil, badKey("The curve (crv) %q is not supported; use P-256, P-384 or P-521.", j.Crv)
	}
	size := (c.Params().BitSize + 7) / 8
	if len(j.D) == 0 {
		return nil, badKey("The EC key lacks its private part (d).")
	}
	if len(j.D) > size || len(j.X) > size || len(j.Y) > size {
		return nil, badKey("The EC key's coordinates are too long for curve %s.", name)
	}
	d := make([]byte, size)
	copy(d[size-len(j.D):], j.D)
	var ec ecdh.Curve
	switch name {
	case CrvP256:
		ec = ecdh.P256()
	case CrvP384:
		ec = ecdh.P384()
	default:
		ec = ecdh.P521()
	}
	dk, err := ec.NewPrivateKey(d)
	if err != nil {
		return nil, badKey("The EC private part (d) is not valid for curve %s.", name)
	}
	pub := dk.PublicKey().Bytes() // 0x04 | X | Y
	x, y := pub[1:1+size], pub[1+size:]
	if len(j.X) > 0 && new(big.Int).SetBytes(j.X).Cmp(new(big.Int).SetBytes(x)) != 0 ||
		len(j.Y) > 0 && new(big.Int).SetBytes(j.Y).Cmp(new(big.Int).SetBytes(y)) != 0 {
		return nil, badKey("The EC key's public point (x, y) does not match its private part (d).")
	}
	return &ecdsa.PrivateKey{
		PublicKey: ecdsa.PublicKey{Curve: c, X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)},
		D:         new(big.Int).SetBytes(d),
	}, nil
}

// publicJWK returns the public parts of priv as a JSONWebKey of type kty.
func publicJWK(kty string, priv crypto.Signer, ops []string) JSONWebKey {
	j := JSONWebKey{Kty: kty, KeyOps: ops}
	switch k := priv.Public().(type) {
	case *rsa.PublicKey:
		j.N = k.N.Bytes()
		j.E = big.NewInt(int64(k.E)).Bytes()
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		j.Crv = k.Curve.Params().Name
		j.X = k.X.FillBytes(make([]byte, size))
		j.Y = k.Y.FillBytes(make([]byte, size))
	}
	return j
}

// publicKey parses the public part of a stored JSONWebKey.
func (j *JSONWebKey) publicKey() (crypto.PublicKey, error) {
	switch baseKty(j.Kty) {
	case KtyRSA:
		e := 0
		for _, b := range j.E {
			e = e<<8 | int(b)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(j.N), E: e}, nil
	case KtyEC:
		c, _, ok := curve(j.Crv)
		if !ok {
			return nil, errors.New("unknown curve " + j.Crv)
		}
		return &ecdsa.PublicKey{Curve: c, X: new(big.Int).SetBytes(j.X), Y: new(big.Int).SetBytes(j.Y)}, nil
	}
	return nil, errors.New("unknown key type " + j.Kty)
}
