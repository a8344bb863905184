package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExternalVaultsFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "credentials.json")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"credentials": [
		{"hosts": ["*.vault.azure.net"], "tenantId": "t", "clientId": "c", "federation": {}},
		{"hosts": ["kv.example.com"], "tenantId": "t2", "clientId": "c2", "clientSecret": "s"}]}`)
	cfg := Config{ExternalVaultHosts: []string{"*.vault.azure.net", "kv.example.com"}, ExternalVaultCredentialsFile: file}
	e, err := externalVaults(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Credentials) != 2 || e.Credentials[0].Federation == nil || e.Credentials[1].ClientSecret != "s" {
		t.Fatalf("credentials = %+v", e.Credentials)
	}
	if w := credentialsFileWarning(file); w != "" {
		t.Errorf("a mode 0600 file: warning %q", w)
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	if w := credentialsFileWarning(file); !strings.Contains(w, "chmod 600") || strings.Contains(w, `"s"`) {
		t.Errorf("a world-readable file with a secret: warning %q", w)
	}
	write(`{"credentials": [{"hosts": ["kv.example.com"], "tenantId": "t", "clientId": "c", "secret": "typo"}]}`)
	if _, err := externalVaults(cfg); err == nil || !strings.Contains(err.Error(), "secret") {
		t.Errorf("an unknown field: %v, want it named", err)
	}
	write(`{"credentials": [{"hosts": ["kv.other.com"], "tenantId": "t", "clientId": "c", "clientSecret": "s"}]}`)
	if _, err := externalVaults(cfg); err == nil || !strings.Contains(err.Error(), "--external-vault-host kv.other.com") {
		t.Errorf("a credential for a host not allowed: %v", err)
	}
}

func TestParseResolve(t *testing.T) {
	from, to, err := ParseResolve("kv.vault.azure.net:443:10.0.0.4")
	if err != nil || from != "kv.vault.azure.net:443" || to != "10.0.0.4" {
		t.Errorf("ParseResolve = %q, %q, %v", from, to, err)
	}
	if _, _, err := ParseResolve("kv.vault.azure.net:443"); err == nil {
		t.Errorf("no address: no error")
	}
	if _, err := outboundClient(Config{Resolve: map[string]string{"nohostport": "10.0.0.4"}}); err == nil {
		t.Errorf("a resolve entry without a port: no error")
	}
	if _, err := outboundClient(Config{ExternalCAFile: filepath.Join(t.TempDir(), "none.pem")}); err == nil || !strings.Contains(err.Error(), "--external-ca-file") {
		t.Errorf("a missing CA file: %v", err)
	}
}
