package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"

	"custody/hsm"
	"custody/keyvault"
)

// tokenHSM lets the key vault keep RSA-HSM and EC-HSM keys in the token of
// the server's root key.
type tokenHSM struct{ t *hsm.Token }

var _ keyvault.HSM = tokenHSM{}

// key turns a token's answer into the key vault's, without a typed nil.
func key(k *hsm.Key, err error) (keyvault.HSMKey, error) {
	if err != nil {
		return nil, err
	}
	return k, nil
}

func (h tokenHSM) GenerateRSA(label string, bits int) (keyvault.HSMKey, error) {
	return key(h.t.GenerateRSA(label, bits))
}

func (h tokenHSM) GenerateEC(label, crv string) (keyvault.HSMKey, error) {
	return key(h.t.GenerateEC(label, crv))
}

func (h tokenHSM) Import(label string, priv crypto.Signer) (keyvault.HSMKey, error) {
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		return key(h.t.ImportRSA(label, k))
	case *ecdsa.PrivateKey:
		return key(h.t.ImportEC(label, k))
	}
	return nil, errors.New("unknown private key type")
}

func (h tokenHSM) Open(id []byte) (keyvault.HSMKey, error) { return key(h.t.OpenKey(id)) }

func (h tokenHSM) Destroy(id []byte) error { return h.t.DestroyKey(id) }
