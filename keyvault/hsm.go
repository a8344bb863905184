package keyvault

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/asn1"
	"math/big"
	"strings"

	"custody"
)

// HSM holds the vault's keys of type RSA-HSM and EC-HSM: they are generated
// (or imported) into a hardware security module, a PKCS#11 token, and every
// private-key operation runs there; their private parts never leave it. The
// server's root key lives in the same token. A Service without one refuses
// to create -HSM keys.
type HSM interface {
	// GenerateRSA and GenerateEC make a key pair in the token; label names
	// it for the token's operators.
	GenerateRSA(label string, bits int) (HSMKey, error)
	GenerateEC(label, crv string) (HSMKey, error)
	// Import puts a private key (*rsa.PrivateKey or *ecdsa.PrivateKey) into
	// the token.
	Import(label string, priv crypto.Signer) (HSMKey, error)
	// Open finds a key by the id it was given.
	Open(id []byte) (HSMKey, error)
	// Destroy deletes a key from the token; a key already gone is not an
	// error.
	Destroy(id []byte) error
}

// HSMKey is a key in the token: a crypto.Signer and, for RSA, a
// crypto.Decrypter.
type HSMKey interface {
	crypto.Signer
	ID() []byte
}

// hsmRefPrefix starts what a key version of an HSM key seals in place of
// its private key: a reference to the key in the token.
var hsmRefPrefix = []byte("custody/keyvault/hsm-key\x00")

// IsHSMReference reports whether opened key material is a reference to a
// key in the HSM rather than a private key (a root key migration must keep
// such keys reachable).
func IsHSMReference(material []byte) bool { return bytes.HasPrefix(material, hsmRefPrefix) }

func isHSMKty(kty string) bool { return strings.HasSuffix(kty, "-HSM") }

func hsmRef(id []byte) []byte { return append(append([]byte(nil), hsmRefPrefix...), id...) }

// hsmID returns the token id of sealed-then-opened material, if it is a
// reference to an HSM key.
func hsmID(material []byte) ([]byte, bool) {
	if !bytes.HasPrefix(material, hsmRefPrefix) {
		return nil, false
	}
	return material[len(hsmRefPrefix):], true
}

// checkHSM says whether vault v may hold a key of type kty: -HSM keys need
// a premium vault (as in Azure) and a server with an HSM.
func (s *Service) checkHSM(v *Vault, kty string) error {
	if !isHSMKty(kty) {
		return nil
	}
	if !strings.EqualFold(v.SKU, "premium") {
		return custody.Errorf(custody.KindInvalid, "BadParameter",
			"Hardware key operation not allowed on standard vault '%s': %s keys need a premium vault (sku name \"premium\"). Create an %s key, or use a premium vault.", v.Name, kty, baseKty(kty))
	}
	if s.HSM == nil {
		return custody.Errorf(custody.KindInvalid, "BadParameter",
			"This server has no hardware security module, so vault '%s' cannot hold %s keys: the server was started without a PKCS#11 root key (--root-key pkcs11:...). Create an %s key instead, or ask the operator to run the server on an HSM.", v.Name, kty, baseKty(kty))
	}
	return nil
}

// generateKey makes a new private key for vault v: in the HSM for -HSM
// types (after checkHSM), else in memory.
func (s *Service) generateKey(v *Vault, name, kty string, size int, crv string) (crypto.Signer, error) {
	if !isHSMKty(kty) {
		return generate(kty, size, crv)
	}
	if err := s.checkHSM(v, kty); err != nil {
		return nil, err
	}
	label := "custody/" + v.Name + "/" + name
	var k HSMKey
	var err error
	if baseKty(kty) == KtyRSA {
		k, err = s.HSM.GenerateRSA(label, size)
	} else {
		k, err = s.HSM.GenerateEC(label, crv)
	}
	if err != nil {
		return nil, custody.Internal(err, "generate %s key %s in the HSM", kty, name)
	}
	return k, nil
}

// importToHSM moves an imported private key into the HSM for -HSM types.
func (s *Service) importToHSM(v *Vault, name, kty string, priv crypto.Signer) (crypto.Signer, error) {
	if !isHSMKty(kty) {
		return priv, nil
	}
	if err := s.checkHSM(v, kty); err != nil {
		return nil, err
	}
	k, err := s.HSM.Import("custody/"+v.Name+"/"+name, priv)
	if err != nil {
		return nil, custody.Internal(err, "import %s key %s into the HSM", kty, name)
	}
	return k, nil
}

// destroyHSMKeys deletes from the token the HSM keys of versions, after the
// versions left the store (a purge). A failure is logged: the key can no
// longer be reached through the vault either way.
func (s *Service) destroyHSMKeys(versions []*KeyVersion) {
	if s.HSM == nil {
		return
	}
	for _, kv := range versions {
		if !isHSMKty(kv.Kty) {
			continue
		}
		material, err := s.Sealer.Open(kv.PrivateSealed, sealAAD(kv.VaultName, kv.KeyName, kv.Version))
		if err != nil {
			s.logger().Warn("purge: cannot open the HSM reference of a key version", "vault", kv.VaultName, "key", kv.KeyName, "version", kv.Version, "err", err)
			continue
		}
		if id, ok := hsmID(material); ok {
			if err := s.HSM.Destroy(id); err != nil {
				s.logger().Warn("purge: cannot destroy a key in the HSM", "vault", kv.VaultName, "key", kv.KeyName, "version", kv.Version, "err", err)
			}
		}
	}
}

// versionsOf lists a key's versions before a purge, for destroyHSMKeys.
func (s *Service) versionsOf(ctx context.Context, vault, name string) []*KeyVersion {
	if s.HSM == nil {
		return nil
	}
	vs, err := s.Keys.ListKeyVersions(ctx, vault, name)
	if err != nil {
		s.logger().Warn("purge: cannot list key versions", "vault", vault, "key", name, "err", err)
		return nil
	}
	return vs
}

// signWith signs digest with a key that is not an in-memory key (an HSM
// key): RSA as PKCS #1 v1.5 or PSS, EC as r||s, as Key Vault answers.
func signWith(priv crypto.Signer, alg string, digest []byte) ([]byte, error) {
	h := sigHash(alg)
	switch k := priv.Public().(type) {
	case *rsa.PublicKey:
		var opts crypto.SignerOpts = h
		if alg[0] == 'P' {
			opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}
		}
		return priv.Sign(nil, digest, opts)
	case *ecdsa.PublicKey:
		der, err := priv.Sign(nil, digest, h)
		if err != nil {
			return nil, err
		}
		var sig struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(der, &sig); err != nil {
			return nil, err
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*size)
		sig.R.FillBytes(out[:size])
		sig.S.FillBytes(out[size:])
		return out, nil
	}
	return nil, custody.Internal(nil, "unknown public key type")
}

// vaultVersions lists the versions of every key of a vault, live or
// deleted, before the vault is purged, for destroyHSMKeys.
func (s *Service) vaultVersions(ctx context.Context, vault string) []*KeyVersion {
	if s.HSM == nil {
		return nil
	}
	var out []*KeyVersion
	for _, deleted := range []bool{false, true} {
		ks, err := s.Keys.ListKeys(ctx, vault, deleted)
		if err != nil {
			s.logger().Warn("purge: cannot list keys", "vault", vault, "err", err)
			continue
		}
		for _, k := range ks {
			out = append(out, s.versionsOf(ctx, vault, k.Name)...)
		}
	}
	return out
}
