package hsm_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"custody/hsm"
	"custody/hsm/hsmtest"
)

func open(t testing.TB, uri string) *hsm.Token {
	t.Helper()
	u, err := hsm.ParseURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := hsm.Open(u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tok.Close)
	return tok
}

func TestParseURI(t *testing.T) {
	u, err := hsm.ParseURI("pkcs11:token=my%20token;object=root;type=secret-key?module-path=/usr/lib/x.so&pin-source=file:/etc/pin")
	if err != nil {
		t.Fatal(err)
	}
	if u.Token != "my token" || u.Object != "root" || u.ModulePath != "/usr/lib/x.so" || u.PinSource != "file:/etc/pin" {
		t.Fatalf("parsed %+v", u)
	}
	u, err = hsm.ParseURI("pkcs11:serial=abc;object=r?module-path=/m.so&pin-value=secret-pin")
	if err != nil || u.Serial != "abc" || u.PinValue != "secret-pin" {
		t.Fatalf("parsed %+v, %v", u, err)
	}
	if strings.Contains(u.String(), "secret-pin") {
		t.Fatalf("String shows the PIN: %s", u)
	}
	for in, want := range map[string]string{
		"pkcs11:token=t;object=o?pin-value=1":                  "module-path",
		"pkcs11:object=o?module-path=/m.so&pin-value=1":        "token",
		"pkcs11:token=t?module-path=/m.so&pin-value=1":         "object",
		"pkcs11:token=t;object=o?module-path=/m.so":            "PIN",
		"pkcs11:token=t;object=o;colour=red?pin-value=1":       "colour",
		"pkcs11:token=t;object=%zz?module-path=/m&pin-value=1": "percent",
		"file:/x": "pkcs11:",
	} {
		if _, err := hsm.ParseURI(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseURI(%q) = %v, want an error naming %q", in, err, want)
		}
	}
}

func TestRootKey(t *testing.T) {
	uri, otherURI := hsmtest.Token(t), hsmtest.Token(t)
	tok := open(t, uri)
	if _, err := tok.SealingKey(); !errors.Is(err, hsm.ErrNoRootKey) || !strings.Contains(err.Error(), "custody root-key init") {
		t.Fatalf("SealingKey before init: %v", err)
	}
	created, err := tok.InitRoot()
	if err != nil || !created {
		t.Fatalf("InitRoot = %v, %v", created, err)
	}
	if created, err := tok.InitRoot(); err != nil || created {
		t.Fatalf("second InitRoot = %v, %v; want the key kept", created, err)
	}
	k1, err := tok.SealingKey()
	if err != nil || len(k1) != 32 {
		t.Fatalf("SealingKey = %x, %v", k1, err)
	}
	k2, _ := tok.SealingKey()
	if !bytes.Equal(k1, k2) {
		t.Fatal("the sealing key changed between derivations")
	}
	p, err := tok.RootProtection()
	if err != nil || !p.Sensitive || p.Extractable || !p.Token {
		t.Fatalf("root key protection %+v, %v; want sensitive, not extractable, a token object", p, err)
	}
	// Another token's root gives another key.
	other := open(t, otherURI)
	other.InitRoot()
	k3, err := other.SealingKey()
	if err != nil || bytes.Equal(k1, k3) {
		t.Fatalf("two tokens derived the same key (%v)", err)
	}
}

func TestWrongPIN(t *testing.T) {
	uri := hsmtest.Token(t)
	u, _ := hsm.ParseURI(strings.Replace(uri, "pin-value="+hsmtest.PIN, "pin-value=0000", 1))
	if _, err := hsm.Open(u); err == nil || !strings.Contains(err.Error(), "PIN") {
		t.Fatalf("Open with a wrong PIN: %v", err)
	}
	u, _ = hsm.ParseURI(strings.Replace(uri, "token=", "token=nope", 1))
	if _, err := hsm.Open(u); err == nil || !strings.Contains(err.Error(), "no PKCS#11 token") {
		t.Fatalf("Open of a missing token: %v", err)
	}
}

func TestRSAKeyInToken(t *testing.T) {
	tok := open(t, hsmtest.Token(t))
	k, err := tok.GenerateRSA("v/k/1", 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public().(*rsa.PublicKey)
	secret := []byte("a data key of thirty-two bytes!!")
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		ct, err := rsa.EncryptOAEP(h.New(), rand.Reader, pub, secret, nil)
		if err != nil {
			t.Fatal(err)
		}
		pt, err := k.Decrypt(nil, ct, &rsa.OAEPOptions{Hash: h})
		if err != nil || !bytes.Equal(pt, secret) {
			t.Fatalf("OAEP %v: %q, %v", h, pt, err)
		}
		ct[len(ct)-1] ^= 1
		if _, err := k.Decrypt(nil, ct, &rsa.OAEPOptions{Hash: h}); err == nil {
			t.Fatalf("OAEP %v: a damaged ciphertext decrypted", h)
		}
	}
	ct, _ := rsa.EncryptPKCS1v15(rand.Reader, pub, secret)
	if pt, err := k.Decrypt(nil, ct, &rsa.PKCS1v15DecryptOptions{}); err != nil || !bytes.Equal(pt, secret) {
		t.Fatalf("PKCS1v15: %q, %v", pt, err)
	}
	d := sha256.Sum256([]byte("message"))
	sig, err := k.Sign(nil, d[:], crypto.SHA256)
	if err != nil || rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig) != nil {
		t.Fatalf("RS256: %v", err)
	}
	sig, err = k.Sign(nil, d[:], &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash})
	if err != nil || rsa.VerifyPSS(pub, crypto.SHA256, d[:], sig, nil) != nil {
		t.Fatalf("PS256: %v", err)
	}
	// The private half stays in the token.
	p, err := tok.KeyProtection(k.ID())
	if err != nil || !p.Sensitive || p.Extractable || !p.Token {
		t.Fatalf("key protection %+v, %v", p, err)
	}
	if v, err := tok.ReadPrivateExponent(k.ID()); err == nil {
		t.Fatalf("the token gave out the private exponent (%d bytes)", len(v))
	}
	again, err := tok.OpenKey(k.ID())
	if err != nil || again.Public().(*rsa.PublicKey).N.Cmp(pub.N) != 0 {
		t.Fatalf("OpenKey: %v", err)
	}
	if err := tok.DestroyKey(k.ID()); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.OpenKey(k.ID()); err == nil {
		t.Fatal("a destroyed key opened")
	}
	_ = sha1.New
}

func TestECKeyInToken(t *testing.T) {
	tok := open(t, hsmtest.Token(t))
	for _, crv := range []string{"P-256", "P-384", "P-521"} {
		k, err := tok.GenerateEC("v/e/1", crv)
		if err != nil {
			t.Fatal(err)
		}
		pub := k.Public().(*ecdsa.PublicKey)
		h := map[string]crypto.Hash{"P-256": crypto.SHA256, "P-384": crypto.SHA384, "P-521": crypto.SHA512}[crv]
		hh := h.New()
		hh.Write([]byte("message"))
		d := hh.Sum(nil)
		sig, err := k.Sign(nil, d, h)
		if err != nil || !ecdsa.VerifyASN1(pub, d, sig) {
			t.Fatalf("%s: signature does not verify (%v)", crv, err)
		}
		if p, err := tok.KeyProtection(k.ID()); err != nil || !p.Sensitive || p.Extractable {
			t.Fatalf("%s: protection %+v, %v", crv, p, err)
		}
	}
}
