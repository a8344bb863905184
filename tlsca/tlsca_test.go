package tlsca_test

import (
	"crypto/x509"
	"testing"

	"custody/tlsca"
)

func TestEnsureCreatesThenReuses(t *testing.T) {
	dir := t.TempDir()
	cert1, pool, err := tlsca.Ensure(dir, "localhost", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"login.localhost", "management.localhost", "kv1.vault.localhost", "acct.batch.localhost"} {
		if _, err := cert1.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("certificate does not verify for %s: %v", name, err)
		}
	}
	if _, err := cert1.Leaf.Verify(x509.VerifyOptions{DNSName: "a.b.vault.localhost", Roots: pool}); err == nil {
		t.Error("certificate verifies for a two-label vault name")
	}
	cert2, _, err := tlsca.Ensure(dir, "localhost", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cert1.Leaf.Equal(cert2.Leaf) {
		t.Error("second start issued a new certificate")
	}
	cert3, pool3, err := tlsca.Ensure(dir, "example.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert3.Leaf.Verify(x509.VerifyOptions{DNSName: "login.example.test", Roots: pool3}); err != nil {
		t.Errorf("new domain: %v", err)
	}
	loaded, err := tlsca.LoadPool(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert3.Leaf.Verify(x509.VerifyOptions{DNSName: "login.example.test", Roots: loaded}); err != nil {
		t.Errorf("the CA was replaced when the domain changed: %v", err)
	}
}
