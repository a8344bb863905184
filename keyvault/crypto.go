package keyvault

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"math/big"
	"strings"

	"custody"
)

// Encryption and key-wrap algorithms (RSA keys).
const (
	AlgRSAOAEP    = "RSA-OAEP"     // OAEP with SHA-1
	AlgRSAOAEP256 = "RSA-OAEP-256" // OAEP with SHA-256
	AlgRSA15      = "RSA1_5"       // PKCS #1 v1.5
)

// Signature algorithms. The request carries the digest, not the message.
const (
	AlgRS256 = "RS256"
	AlgRS384 = "RS384"
	AlgRS512 = "RS512"
	AlgPS256 = "PS256"
	AlgPS384 = "PS384"
	AlgPS512 = "PS512"
	AlgES256 = "ES256"
	AlgES384 = "ES384"
	AlgES512 = "ES512"
)

func normalizeAlg(alg string, known ...string) (string, bool) {
	for _, k := range known {
		if strings.EqualFold(alg, k) {
			return k, true
		}
	}
	return "", false
}

var encAlgs = []string{AlgRSAOAEP, AlgRSAOAEP256, AlgRSA15}
var sigAlgs = []string{AlgRS256, AlgRS384, AlgRS512, AlgPS256, AlgPS384, AlgPS512, AlgES256, AlgES384, AlgES512}

// rsaEncrypt encrypts (or wraps) plaintext with pub under alg.
func rsaEncrypt(pub *rsa.PublicKey, alg string, plaintext []byte) ([]byte, error) {
	var out []byte
	var err error
	switch alg {
	case AlgRSAOAEP:
		out, err = rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, plaintext, nil)
	case AlgRSAOAEP256:
		out, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, plaintext, nil)
	case AlgRSA15:
		out, err = rsa.EncryptPKCS1v15(rand.Reader, pub, plaintext)
	}
	if err != nil {
		return nil, custody.Errorf(custody.KindInvalid, "BadParameter",
			"The value is too long to encrypt with %s under a %d-bit key; encrypt a shorter value (a key to wrap, typically 32 bytes).", alg, pub.N.BitLen())
	}
	return out, nil
}

// rsaDecrypt decrypts (or unwraps) ciphertext with priv under alg. Every
// failure gives the same message, so that it tells nothing about the
// plaintext.
func rsaDecrypt(key crypto.Signer, alg string, ciphertext []byte) ([]byte, error) {
	var out []byte
	var err error
	if priv, ok := key.(*rsa.PrivateKey); ok {
		switch alg {
		case AlgRSAOAEP:
			out, err = rsa.DecryptOAEP(sha1.New(), nil, priv, ciphertext, nil)
		case AlgRSAOAEP256:
			out, err = rsa.DecryptOAEP(sha256.New(), nil, priv, ciphertext, nil)
		case AlgRSA15:
			out, err = rsa.DecryptPKCS1v15(nil, priv, ciphertext)
		}
	} else if d, ok := key.(crypto.Decrypter); ok {
		// A key in the HSM: the token decrypts.
		var opts crypto.DecrypterOpts
		switch alg {
		case AlgRSAOAEP:
			opts = &rsa.OAEPOptions{Hash: crypto.SHA1}
		case AlgRSAOAEP256:
			opts = &rsa.OAEPOptions{Hash: crypto.SHA256}
		case AlgRSA15:
			opts = &rsa.PKCS1v15DecryptOptions{}
		}
		out, err = d.Decrypt(nil, ciphertext, opts)
	} else {
		return nil, custody.Internal(nil, "the key cannot decrypt")
	}
	if err != nil {
		return nil, custody.Errorf(custody.KindInvalid, "BadParameter",
			"The value could not be decrypted with algorithm %s: it was not encrypted with this key version and algorithm, or it was altered.", alg)
	}
	return out, nil
}

func sigHash(alg string) crypto.Hash {
	switch alg[2:] {
	case "256":
		return crypto.SHA256
	case "384":
		return crypto.SHA384
	default:
		return crypto.SHA512
	}
}

func checkDigest(alg string, digest []byte) error {
	h := sigHash(alg)
	if len(digest) != h.Size() {
		return custody.Errorf(custody.KindInvalid, "BadParameter",
			"The digest is %d bytes, but %s signs a %d-byte %s digest; hash the message with %s and send the digest.", len(digest), alg, h.Size(), h, h)
	}
	return nil
}

// signDigest signs digest with priv under alg.
func signDigest(priv crypto.Signer, kty, alg string, digest []byte) ([]byte, error) {
	if err := checkSigAlgForKey(priv.Public(), kty, alg); err != nil {
		return nil, err
	}
	if err := checkDigest(alg, digest); err != nil {
		return nil, err
	}
	h := sigHash(alg)
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		if alg[0] == 'P' {
			return rsa.SignPSS(rand.Reader, k, h, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		return rsa.SignPKCS1v15(nil, k, h, digest)
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, digest)
		if err != nil {
			return nil, err
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		sig := make([]byte, 2*size)
		r.FillBytes(sig[:size])
		s.FillBytes(sig[size:])
		return sig, nil
	}
	sig, err := signWith(priv, alg, digest)
	if err != nil {
		return nil, custody.Internal(err, "sign in the HSM")
	}
	return sig, nil
}

// verifyDigest reports whether sig is a valid signature of digest under alg.
func verifyDigest(pub crypto.PublicKey, kty, alg string, digest, sig []byte) (bool, error) {
	if err := checkSigAlgForKey(pub, kty, alg); err != nil {
		return false, err
	}
	if err := checkDigest(alg, digest); err != nil {
		return false, err
	}
	h := sigHash(alg)
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if alg[0] == 'P' {
			return rsa.VerifyPSS(k, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}) == nil, nil
		}
		return rsa.VerifyPKCS1v15(k, h, digest, sig) == nil, nil
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return false, nil
		}
		r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(k, digest, r, s), nil
	}
	return false, custody.Internal(nil, "unknown public key type")
}

func checkSigAlgForKey(pub crypto.PublicKey, kty, alg string) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if alg[0] == 'E' {
			return custody.Errorf(custody.KindInvalid, "BadParameter", "Algorithm %s is for EC keys; this %s key signs with RS256/384/512 or PS256/384/512.", alg, kty)
		}
	case *ecdsa.PublicKey:
		want := map[string]string{CrvP256: AlgES256, CrvP384: AlgES384, CrvP521: AlgES512}[k.Curve.Params().Name]
		if alg != want {
			return custody.Errorf(custody.KindInvalid, "BadParameter", "Algorithm %s does not match this key's curve %s; use %s.", alg, k.Curve.Params().Name, want)
		}
	}
	return nil
}

// digestOf hashes msg for alg; tests and tools use it to build digests.
func digestOf(alg string, msg []byte) []byte {
	switch sigHash(alg) {
	case crypto.SHA256:
		s := sha256.Sum256(msg)
		return s[:]
	case crypto.SHA384:
		s := sha512.Sum384(msg)
		return s[:]
	default:
		s := sha512.Sum512(msg)
		return s[:]
	}
}
