package batch

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHostMatches(t *testing.T) {
	for _, c := range []struct {
		pattern, host, port string
		want                bool
	}{
		{"*.vault.azure.net", "kv1.vault.azure.net", "", true},
		{"*.vault.azure.net", "kv1.vault.azure.net", "443", true},
		{"*.vault.azure.net", "KV1.Vault.Azure.Net", "", true},
		{"*.vault.azure.net", "a.kv1.vault.azure.net", "", false},
		{"*.vault.azure.net", "vault.azure.net", "", false},
		{"*.vault.azure.net", "kv1.vault.azure.net.evil.example", "", false},
		{"*.vault.azure.net", "kv1.vault.azure.net", "8443", false},
		{"*.vault.ext.localhost:8443", "kv1.vault.ext.localhost", "8443", true},
		{"*.vault.ext.localhost:8443", "kv1.vault.ext.localhost", "", false},
		{"kv.example.com", "kv.example.com", "", true},
		{"kv.example.com", "kv2.example.com", "", false},
		{"kv.example.com:443", "kv.example.com", "", true},
		{"127.0.0.2:9000", "127.0.0.2", "9000", true},
	} {
		if got := hostMatches(c.pattern, c.host, c.port); got != c.want {
			t.Errorf("hostMatches(%q, %q, %q) = %v, want %v", c.pattern, c.host, c.port, got, c.want)
		}
	}
}

func TestExternalVaultsValidate(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := func() ExternalVaults {
		return ExternalVaults{Hosts: []string{"*.vault.azure.net", "kv.example.com:8443"}, Credentials: []ExternalCredential{
			{Hosts: []string{"*.vault.azure.net"}, TenantID: "t", ClientID: "c", ClientSecretFile: secretFile},
			{Hosts: []string{"kv.example.com:8443"}, Authority: "https://login.example.com", TenantID: "t", ClientID: "c", Federation: &Federation{}},
		}}
	}
	e := ok()
	if err := e.Validate(os.ReadFile); err != nil {
		t.Fatal(err)
	}
	if c := e.Credentials[0]; c.ClientSecret != "s3cret" || c.Authority != DefaultAuthority {
		t.Errorf("after Validate: %+v", c)
	}
	if e.Credentials[1].Authority != "https://login.example.com/" {
		t.Errorf("authority = %q", e.Credentials[1].Authority)
	}
	for name, c := range map[string]struct {
		edit func(e *ExternalVaults)
		want string
	}{
		"bad pattern":           {func(e *ExternalVaults) { e.Hosts = append(e.Hosts, "kv.*.net") }, "--external-vault-host"},
		"bad port":              {func(e *ExternalVaults) { e.Hosts = append(e.Hosts, "kv.example.com:443abc") }, "port"},
		"wildcard too wide":     {func(e *ExternalVaults) { e.Hosts = append(e.Hosts, "*.net") }, "--external-vault-host"},
		"host not allowed":      {func(e *ExternalVaults) { e.Credentials[0].Hosts = []string{"*.vault.azure.cn"} }, "add --external-vault-host *.vault.azure.cn"},
		"wider than allowed":    {func(e *ExternalVaults) { e.Hosts = []string{"kv1.vault.azure.net", "kv.example.com:8443"} }, "not an allowed external vault host"},
		"no tenant":             {func(e *ExternalVaults) { e.Credentials[0].TenantID = "" }, "tenantId"},
		"two ways":              {func(e *ExternalVaults) { e.Credentials[1].ClientSecret = "x" }, "exactly one"},
		"no way":                {func(e *ExternalVaults) { e.Credentials[1].Federation = nil }, "exactly one"},
		"http authority":        {func(e *ExternalVaults) { e.Credentials[1].Authority = "http://login.example.com" }, "https"},
		"missing secret file":   {func(e *ExternalVaults) { e.Credentials[0].ClientSecretFile = secretFile + ".gone" }, "clientSecretFile"},
		"credential for no one": {func(e *ExternalVaults) { e.Credentials[0].Hosts = nil }, "no vault host"},
	} {
		e := ok()
		c.edit(&e)
		err := e.Validate(os.ReadFile)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error shows the secret: %v", name, err)
		}
	}
	// A specific credential before a wildcard one wins for its host.
	e = ExternalVaults{Hosts: []string{"*.vault.azure.net"}, Credentials: []ExternalCredential{
		{Hosts: []string{"kv1.vault.azure.net"}, TenantID: "t1", ClientID: "c", ClientSecret: "s"},
		{Hosts: []string{"*.vault.azure.net"}, TenantID: "t2", ClientID: "c", ClientSecret: "s"},
	}}
	if err := e.Validate(func(string) ([]byte, error) { return nil, errors.New("unused") }); err != nil {
		t.Fatal(err)
	}
	if i, j := e.credential("kv1.vault.azure.net", ""), e.credential("kv2.vault.azure.net", "443"); i != 0 || j != 1 {
		t.Errorf("credential indexes = %d, %d; want 0, 1", i, j)
	}
	if e.credential("kv1.vault.azure.cn", "") != -1 {
		t.Errorf("a credential matched a host it does not list")
	}
}
