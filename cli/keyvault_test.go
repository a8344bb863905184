package cli_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"custody/server/servertest"
)

// kvPolicyKeys returns the sorted key permissions of oid's access policy in
// a vault body, and whether it has one.
func kvPolicyKeys(t *testing.T, v map[string]any, oid string) ([]string, bool) {
	t.Helper()
	props, _ := v["properties"].(map[string]any)
	ps, _ := props["accessPolicies"].([]any)
	for _, p := range ps {
		m, _ := p.(map[string]any)
		if !strings.EqualFold(m["objectId"].(string), oid) {
			continue
		}
		perms, _ := m["permissions"].(map[string]any)
		keys, _ := perms["keys"].([]any)
		out := []string{}
		for _, k := range keys {
			out = append(out, k.(string))
		}
		slices.Sort(out)
		return out, true
	}
	return nil, false
}

func kvPolicyCount(v map[string]any) int {
	props, _ := v["properties"].(map[string]any)
	ps, _ := props["accessPolicies"].([]any)
	return len(ps)
}

// TestKeyVaultSeedCommands runs the seed's Key Vault steps with the CLI: a
// vault with purge protection, an access policy Get/Wrap/Unwrap for a
// managed identity, an RSA-2048 key for wrapKey and unwrapKey, its
// identifier, a new version; then delete and recover, purge refused, and
// the audit log.
func TestKeyVaultSeedCommands(t *testing.T) {
	ts := servertest.New(t, nil)
	dir := ts.DataDir()
	port := strconv.Itoa(ts.Endpoint.Port)
	mustRun(t, dir, "group", "create", "-n", "rg1", "-l", "westus2")
	id := decode[map[string]any](t, mustRun(t, dir, "identity", "create", "-n", "batch-identity", "-g", "rg1"))
	principal := id["principalId"].(string)

	v := decode[map[string]any](t, mustRun(t, dir, "keyvault", "create", "-n", "seedvault", "-g", "rg1", "-l", "westus2", "--enable-purge-protection", "true"))
	props, _ := v["properties"].(map[string]any)
	if props["enablePurgeProtection"] != true || props["enableSoftDelete"] != true || props["softDeleteRetentionInDays"] != float64(90) || props["enableRbacAuthorization"] != false {
		t.Fatalf("keyvault create properties = %v", props)
	}
	if v["resourceGroup"] != "rg1" || v["type"] != "Microsoft.KeyVault/vaults" {
		t.Errorf("keyvault create = %v", v)
	}
	// The creator gets one full access policy, not two.
	if n := kvPolicyCount(v); n != 1 {
		t.Errorf("access policies after create = %d, want the creator's only", n)
	}
	if got, want := mustRun(t, dir, "keyvault", "show", "-n", "seedvault", "--query", "properties.vaultUri", "-o", "tsv"), "https://seedvault.vault.localhost:"+port+"/\n"; got != want {
		t.Errorf("keyvault show --query properties.vaultUri = %q, want %q", got, want)
	}

	v = decode[map[string]any](t, mustRun(t, dir, "keyvault", "set-policy", "-n", "seedvault", "--object-id", principal, "--key-permissions", "get", "wrapKey", "unwrapKey"))
	if got, ok := kvPolicyKeys(t, v, principal); !ok || !slices.Equal(got, []string{"get", "unwrapKey", "wrapKey"}) {
		t.Fatalf("identity's key permissions after set-policy = %v (%v)", got, ok)
	}
	if n := kvPolicyCount(v); n != 2 {
		t.Errorf("access policies after set-policy = %d, want 2", n)
	}
	// set-policy replaces the kinds it names.
	v = decode[map[string]any](t, mustRun(t, dir, "keyvault", "set-policy", "-n", "seedvault", "-g", "rg1", "--object-id", principal, "--key-permissions", "get", "wrapKey", "unwrapKey", "--secret-permissions", "get"))
	if got, _ := kvPolicyKeys(t, v, principal); !slices.Equal(got, []string{"get", "unwrapKey", "wrapKey"}) || kvPolicyCount(v) != 2 {
		t.Errorf("after a second set-policy: keys %v, %d policies", got, kvPolicyCount(v))
	}

	k := decode[map[string]any](t, mustRun(t, dir, "keyvault", "key", "create", "--vault-name", "seedvault", "-n", "cmk", "--kty", "RSA", "--size", "2048", "--ops", "wrapKey", "unwrapKey"))
	jwk, _ := k["key"].(map[string]any)
	if ops, _ := jwk["keyOps"].([]any); jwk["kty"] != "RSA" || len(ops) != 2 || jwk["key_ops"] != nil {
		t.Fatalf("key create = %v", k)
	}
	kidRe := regexp.MustCompile(`^https://seedvault\.vault\.localhost:` + port + `/keys/cmk/[0-9a-f]{32}\n$`)
	kid1 := mustRun(t, dir, "keyvault", "key", "show", "--vault-name", "seedvault", "-n", "cmk", "--query", "key.kid", "-o", "tsv")
	if !kidRe.MatchString(kid1) {
		t.Fatalf("key show --query key.kid = %q, want %s", kid1, kidRe)
	}
	if kid1 != jwk["kid"].(string)+"\n" {
		t.Errorf("key show kid %q differs from key create kid %v", kid1, jwk["kid"])
	}
	// A new version.
	mustRun(t, dir, "keyvault", "key", "create", "--vault-name", "seedvault", "-n", "cmk", "--kty", "RSA", "--size", "2048", "--ops", "wrapKey", "unwrapKey")
	kid2 := mustRun(t, dir, "keyvault", "key", "show", "--vault-name", "seedvault", "-n", "cmk", "--query", "key.kid", "-o", "tsv")
	if !kidRe.MatchString(kid2) || kid2 == kid1 {
		t.Fatalf("second version kid = %q (first %q)", kid2, kid1)
	}
	versions := decode[[]map[string]any](t, mustRun(t, dir, "keyvault", "key", "list-versions", "--vault-name", "seedvault", "-n", "cmk"))
	if len(versions) != 2 {
		t.Fatalf("list-versions = %d versions, want 2", len(versions))
	}
	// The first version stays addressable, by --version and by --id.
	ver1 := strings.TrimSpace(kid1[strings.LastIndex(kid1, "/")+1:])
	if got := mustRun(t, dir, "keyvault", "key", "show", "--vault-name", "seedvault", "-n", "cmk", "--version", ver1, "--query", "key.kid", "-o", "tsv"); got != kid1 {
		t.Errorf("key show --version = %q, want %q", got, kid1)
	}
	if got := mustRun(t, dir, "keyvault", "key", "show", "--id", strings.TrimSpace(kid1), "--query", "key.kid", "-o", "tsv"); got != kid1 {
		t.Errorf("key show --id = %q, want %q", got, kid1)
	}
	if got := mustRun(t, dir, "keyvault", "key", "list", "--vault-name", "seedvault", "--query", "[].name", "-o", "tsv"); got != "cmk\n" {
		t.Errorf("key list names = %q", got)
	}
	// A key limited to wrapKey and unwrapKey cannot encrypt.
	mustFail(t, dir, "ERROR: (", "keyvault", "key", "encrypt", "--vault-name", "seedvault", "-n", "cmk", "--algorithm", "RSA-OAEP-256", "--value", "hello", "--data-type", "plaintext")

	// Delete and recover the key: both versions come back.
	del := decode[map[string]any](t, mustRun(t, dir, "keyvault", "key", "delete", "--vault-name", "seedvault", "-n", "cmk"))
	if !strings.HasSuffix(del["recoveryId"].(string), "/deletedkeys/cmk") {
		t.Errorf("key delete recoveryId = %v", del["recoveryId"])
	}
	mustFail(t, dir, "ERROR: (KeyNotFound) ", "keyvault", "key", "show", "--vault-name", "seedvault", "-n", "cmk")
	if got := mustRun(t, dir, "keyvault", "key", "list-deleted", "--vault-name", "seedvault", "--query", "[].name", "-o", "tsv"); got != "cmk\n" {
		t.Errorf("key list-deleted = %q", got)
	}
	// Purge protection refuses the key's purge.
	mustFail(t, dir, "ERROR: (", "keyvault", "key", "purge", "--vault-name", "seedvault", "-n", "cmk")
	mustRun(t, dir, "keyvault", "key", "recover", "--vault-name", "seedvault", "-n", "cmk")
	if got := mustRun(t, dir, "keyvault", "key", "show", "--vault-name", "seedvault", "-n", "cmk", "--query", "key.kid", "-o", "tsv"); got != kid2 {
		t.Errorf("kid after recover = %q, want %q", got, kid2)
	}
	if got := decode[[]any](t, mustRun(t, dir, "keyvault", "key", "list-versions", "--vault-name", "seedvault", "-n", "cmk")); len(got) != 2 {
		t.Errorf("versions after recover = %d, want 2", len(got))
	}

	// Delete the vault: purge is refused under purge protection; recover
	// brings back the vault with its policy and keys.
	mustRun(t, dir, "keyvault", "delete", "-n", "seedvault")
	mustFail(t, dir, "ERROR: (ResourceNotFound) ", "keyvault", "show", "-n", "seedvault")
	deleted := decode[[]map[string]any](t, mustRun(t, dir, "keyvault", "list-deleted"))
	if len(deleted) != 1 || deleted[0]["name"] != "seedvault" {
		t.Fatalf("keyvault list-deleted = %v", deleted)
	}
	mustFail(t, dir, "ERROR: (ConflictError) ", "keyvault", "create", "-n", "seedvault", "-g", "rg1")
	stderr := mustFail(t, dir, "ERROR: (PurgeProtectionEnabled) ", "keyvault", "purge", "-n", "seedvault")
	if !strings.Contains(stderr, "seedvault") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("purge refusal = %q, want one line naming the vault", stderr)
	}
	v = decode[map[string]any](t, mustRun(t, dir, "keyvault", "recover", "-n", "seedvault"))
	if got, _ := kvPolicyKeys(t, v, principal); !slices.Equal(got, []string{"get", "unwrapKey", "wrapKey"}) {
		t.Errorf("identity's policy after recover = %v", got)
	}
	if got := mustRun(t, dir, "keyvault", "key", "show", "--vault-name", "seedvault", "-n", "cmk", "--query", "key.kid", "-o", "tsv"); got != kid2 {
		t.Errorf("kid after vault recover = %q, want %q", got, kid2)
	}
	if got := mustRun(t, dir, "keyvault", "list", "--query", "[].name", "-o", "tsv"); got != "seedvault\n" {
		t.Errorf("keyvault list = %q", got)
	}

	// The audit log, most recent first.
	audit := decode[[]map[string]any](t, mustRun(t, dir, "keyvault", "audit", "list", "--vault-name", "seedvault"))
	if len(audit) < 10 {
		t.Fatalf("audit list has %d records, want every key operation", len(audit))
	}
	if audit[0]["operation"] != "KeyGet" || audit[0]["key"] != "cmk" || audit[0]["outcome"] != "success" {
		t.Errorf("most recent audit record = %v, want the last key show", audit[0])
	}
	for i := 1; i < len(audit); i++ {
		if audit[i]["id"].(float64) >= audit[i-1]["id"].(float64) || audit[i]["time"].(string) > audit[i-1]["time"].(string) {
			t.Fatalf("audit records %d and %d are not most recent first: %v, %v", i-1, i, audit[i-1], audit[i])
		}
	}
	var ops []string
	for _, r := range audit {
		ops = append(ops, r["operation"].(string))
	}
	for _, want := range []string{"KeyCreate", "KeyListVersions", "KeyDelete", "KeyRecover", "KeyPurge", "KeyEncrypt"} {
		if !slices.Contains(ops, want) {
			t.Errorf("audit list lacks %s: %v", want, ops)
		}
	}
	if last := audit[len(audit)-1]; last["operation"] != "KeyCreate" {
		t.Errorf("oldest audit record = %v, want the first key create", last)
	}
	if got := decode[[]any](t, mustRun(t, dir, "keyvault", "audit", "list", "--vault-name", "seedvault", "--name", "cmk", "--top", "3")); len(got) != 3 {
		t.Errorf("audit list --top 3 = %d records", len(got))
	}
	table := mustRun(t, dir, "keyvault", "audit", "list", "--vault-name", "seedvault", "--top", "1", "-o", "table")
	if !strings.HasPrefix(table, "Time") || !strings.Contains(table, "KeyGet") {
		t.Errorf("audit list -o table =\n%s", table)
	}

	// delete-policy removes the identity's policy.
	v = decode[map[string]any](t, mustRun(t, dir, "keyvault", "delete-policy", "-n", "seedvault", "--object-id", principal))
	if _, ok := kvPolicyKeys(t, v, principal); ok || kvPolicyCount(v) != 1 {
		t.Errorf("identity's policy still there after delete-policy (%d policies)", kvPolicyCount(v))
	}
	mustFail(t, dir, "ERROR: no matching policies", "keyvault", "delete-policy", "-n", "seedvault", "--object-id", principal)
}

// TestKeyVaultKeyCommands covers the other key commands and flags on a vault
// without purge protection.
func TestKeyVaultKeyCommands(t *testing.T) {
	ts := servertest.New(t, nil)
	dir := ts.DataDir()
	tmp := t.TempDir()
	mustRun(t, dir, "group", "create", "-n", "rg1", "-l", "westus2")
	v := decode[map[string]any](t, mustRun(t, dir, "keyvault", "create", "-n", "plainvault", "-g", "rg1", "--retention-days", "7", "--tags", "env=dev", "team=keys"))
	props, _ := v["properties"].(map[string]any)
	if props["softDeleteRetentionInDays"] != float64(7) || props["enablePurgeProtection"] != nil || v["location"] != "westus2" {
		t.Fatalf("keyvault create = %v", v)
	}
	if tags, _ := v["tags"].(map[string]any); tags["env"] != "dev" || tags["team"] != "keys" {
		t.Errorf("tags = %v", v["tags"])
	}

	// Encrypt and decrypt round trip.
	mustRun(t, dir, "keyvault", "key", "create", "--vault-name", "plainvault", "-n", "enc", "--size", "3072", "--tags", "use=test")
	enc := decode[map[string]any](t, mustRun(t, dir, "keyvault", "key", "encrypt", "--vault-name", "plainvault", "-n", "enc", "--algorithm", "RSA-OAEP-256", "--value", "hello vault", "--data-type", "plaintext"))
	dec := decode[map[string]any](t, mustRun(t, dir, "keyvault", "key", "decrypt", "--vault-name", "plainvault", "-n", "enc", "--algorithm", "RSA-OAEP-256", "--value", enc["result"].(string), "--data-type", "plaintext"))
	if dec["result"] != "hello vault" {
		t.Errorf("decrypt = %v, want hello vault", dec)
	}

	// set-attributes.
	got := decode[map[string]any](t, mustRun(t, dir, "keyvault", "key", "set-attributes", "--vault-name", "plainvault", "-n", "enc", "--enabled", "false", "--expires", "2040-01-02T03:04:05Z", "--tags", "use=off"))
	attrs, _ := got["attributes"].(map[string]any)
	if attrs["enabled"] != false || attrs["expires"] != "2040-01-02T03:04:05+00:00" || attrs["notBefore"] != nil {
		t.Errorf("set-attributes = %v", attrs)
	}
	mustFail(t, dir, "ERROR: (", "keyvault", "key", "encrypt", "--vault-name", "plainvault", "-n", "enc", "--algorithm", "RSA-OAEP-256", "--value", "aGk=")
	mustRun(t, dir, "keyvault", "key", "set-attributes", "--vault-name", "plainvault", "-n", "enc", "--enabled")
	mustFail(t, dir, "ERROR: argument --expires", "keyvault", "key", "set-attributes", "--vault-name", "plainvault", "-n", "enc", "--expires", "next year")

	// EC keys. HSM protection needs a premium vault on a server with an
	// HSM: refused here.
	mustFail(t, dir, "ERROR: (BadParameter) Hardware key operation not allowed on standard vault", "keyvault", "key", "create", "--vault-name", "plainvault", "-n", "ec", "--kty", "EC", "--curve", "P-384", "--protection", "hsm")
	ec := decode[map[string]any](t, mustRun(t, dir, "keyvault", "key", "create", "--vault-name", "plainvault", "-n", "ec", "--kty", "EC", "--curve", "P-384"))
	if jwk, _ := ec["key"].(map[string]any); jwk["kty"] != "EC" || jwk["crv"] != "P-384" {
		t.Errorf("EC key = %v", ec["key"])
	}
	mustFail(t, dir, "ERROR: (", "keyvault", "key", "create", "--vault-name", "plainvault", "-n", "bad", "--kty", "RSA", "--size", "1024")

	// Import a PEM private key.
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	pemFile := filepath.Join(tmp, "key.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	imp := decode[map[string]any](t, mustRun(t, dir, "keyvault", "key", "import", "--vault-name", "plainvault", "-n", "imported", "--pem-file", pemFile, "--ops", "wrapKey", "unwrapKey"))
	if jwk, _ := imp["key"].(map[string]any); jwk["kty"] != "RSA" || jwk["d"] != nil {
		t.Errorf("imported key = %v", imp["key"])
	}
	mustFail(t, dir, "ERROR: ", "keyvault", "key", "import", "--vault-name", "plainvault", "-n", "imported", "--pem-file", filepath.Join(tmp, "missing.pem"))

	// Rotate and the rotation policy.
	rotated := decode[map[string]any](t, mustRun(t, dir, "keyvault", "key", "rotate", "--vault-name", "plainvault", "-n", "imported"))
	if rotated["key"].(map[string]any)["kid"] == imp["key"].(map[string]any)["kid"] {
		t.Errorf("rotate kept the kid")
	}
	policyFile := filepath.Join(tmp, "policy.json")
	os.WriteFile(policyFile, []byte(`{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P90D"},"action":{"type":"Rotate"}}],"attributes":{"expiryTime":"P1Y"}}`), 0o600)
	mustRun(t, dir, "keyvault", "key", "rotation-policy", "update", "--vault-name", "plainvault", "-n", "imported", "--value", "@"+policyFile)
	if got := mustRun(t, dir, "keyvault", "key", "rotation-policy", "show", "--vault-name", "plainvault", "-n", "imported", "--query", "attributes.expiryTime", "-o", "tsv"); got != "P1Y\n" {
		t.Errorf("rotation-policy show expiryTime = %q", got)
	}

	// Backup, delete, purge, restore.
	backup := filepath.Join(tmp, "imported.backup")
	mustRun(t, dir, "keyvault", "key", "backup", "--vault-name", "plainvault", "-n", "imported", "--file", backup)
	mustRun(t, dir, "keyvault", "key", "delete", "--vault-name", "plainvault", "-n", "imported")
	mustRun(t, dir, "keyvault", "key", "purge", "--vault-name", "plainvault", "-n", "imported")
	mustFail(t, dir, "ERROR: (", "keyvault", "key", "show", "--vault-name", "plainvault", "-n", "imported")
	restored := decode[map[string]any](t, mustRun(t, dir, "keyvault", "key", "restore", "--vault-name", "plainvault", "--file", backup))
	if restored["key"].(map[string]any)["kid"] != rotated["key"].(map[string]any)["kid"] {
		t.Errorf("restored kid %v, want %v", restored["key"].(map[string]any)["kid"], rotated["key"].(map[string]any)["kid"])
	}
	if got := decode[[]any](t, mustRun(t, dir, "keyvault", "key", "list-versions", "--vault-name", "plainvault", "-n", "imported")); len(got) != 2 {
		t.Errorf("versions after restore = %d, want 2", len(got))
	}

	// update, set-policy by service principal name, and bad input.
	up := decode[map[string]any](t, mustRun(t, dir, "keyvault", "update", "-n", "plainvault", "--enable-purge-protection"))
	if up["properties"].(map[string]any)["enablePurgeProtection"] != true {
		t.Errorf("update --enable-purge-protection = %v", up["properties"])
	}
	mustFail(t, dir, "ERROR: (BadRequest) ", "keyvault", "update", "-n", "plainvault", "--enable-purge-protection", "false")
	mustFail(t, dir, "ERROR: (BadRequest) ", "keyvault", "update", "-n", "plainvault", "--retention-days", "30")
	sp := decode[map[string]any](t, mustRun(t, dir, "ad", "sp", "create-for-rbac", "-n", "kv-app"))
	v = decode[map[string]any](t, mustRun(t, dir, "keyvault", "set-policy", "-n", "plainvault", "--spn", "kv-app", "--key-permissions", "get", "list"))
	spID := decode[map[string]any](t, mustRun(t, dir, "ad", "sp", "show", "--id", sp["appId"].(string)))["id"].(string)
	if got, ok := kvPolicyKeys(t, v, spID); !ok || !slices.Equal(got, []string{"get", "list"}) {
		t.Errorf("policy for --spn kv-app = %v (%v)", got, ok)
	}
	v = decode[map[string]any](t, mustRun(t, dir, "keyvault", "set-policy", "-n", "plainvault", "--spn", sp["appId"].(string), "--key-permissions", "all"))
	if got, _ := kvPolicyKeys(t, v, spID); !slices.Equal(got, []string{"all"}) {
		t.Errorf("policy for --spn appId = %v", got)
	}
	mustFail(t, dir, "ERROR: (BadRequest) ", "keyvault", "set-policy", "-n", "plainvault", "--object-id", spID, "--key-permissions", "get", "fly")
	mustFail(t, dir, "ERROR: usage error", "keyvault", "set-policy", "-n", "plainvault", "--key-permissions", "get")
	mustFail(t, dir, "ERROR: unable to find", "keyvault", "set-policy", "-n", "plainvault", "--upn", "nobody", "--key-permissions", "get")
	mustFail(t, dir, "ERROR: (BadRequest) ", "keyvault", "create", "-n", "badvault", "-g", "rg1", "--retention-days", "5")
	mustFail(t, dir, "ERROR: (VaultNameNotValid) ", "keyvault", "create", "-n", "bad--name", "-g", "rg1")
	mustFail(t, dir, "ERROR: unrecognized arguments: extra", "keyvault", "create", "-n", "vault2", "-g", "rg1", "extra")
	if got := mustRun(t, dir, "keyvault", "list", "-g", "rg1", "--query", "[].name", "-o", "tsv"); got != "plainvault\n" {
		t.Errorf("vaults after refusals = %q", got)
	}

	// Purge a deleted vault without purge protection... after creating one.
	mustRun(t, dir, "keyvault", "create", "-n", "tempvault", "-g", "rg1", "--enable-purge-protection", "false", "--enable-rbac-authorization", "true")
	mustFail(t, dir, "ERROR: cannot set policies", "keyvault", "set-policy", "-n", "tempvault", "--object-id", spID, "--key-permissions", "get")
	mustRun(t, dir, "keyvault", "delete", "-n", "tempvault")
	mustRun(t, dir, "keyvault", "purge", "-n", "tempvault")
	if got := mustRun(t, dir, "keyvault", "list-deleted", "--query", "[].name", "-o", "tsv"); got != "" {
		t.Errorf("list-deleted after purge = %q", got)
	}
	mustRun(t, dir, "keyvault", "create", "-n", "tempvault", "-g", "rg1")
}

// TestKeyTimestampsAsAz: key commands print the attributes' timestamps as
// az does, ISO 8601 strings in UTC ("2026-11-27T14:12:15+00:00", exp as
// expires and nbf as notBefore), and a deleted key's deletedDate and
// scheduledPurgeDate too; the REST API's integer seconds are not printed.
func TestKeyTimestampsAsAz(t *testing.T) {
	ts := servertest.New(t, nil)
	dir := ts.DataDir()
	mustRun(t, dir, "group", "create", "-n", "rg1", "-l", "westus2")
	mustRun(t, dir, "keyvault", "create", "-n", "timevault", "-g", "rg1", "--retention-days", "7")
	isoRe := regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$`)
	recent := func(what string, v any) {
		t.Helper()
		s, _ := v.(string)
		if !isoRe.MatchString(s) {
			t.Fatalf("%s = %#v, want an ISO 8601 string like 2026-11-27T14:12:15+00:00", what, v)
		}
		at, err := time.Parse(time.RFC3339, s)
		if err != nil || time.Since(at) > time.Hour || time.Until(at) > time.Hour {
			t.Fatalf("%s = %s (%v), want about now", what, s, err)
		}
	}
	checkAttrs := func(what string, m map[string]any, expires, notBefore any) {
		t.Helper()
		attrs, _ := m["attributes"].(map[string]any)
		recent(what+" attributes.created", attrs["created"])
		recent(what+" attributes.updated", attrs["updated"])
		if attrs["expires"] != expires || attrs["notBefore"] != notBefore {
			t.Fatalf("%s expires %#v, notBefore %#v; want %#v, %#v", what, attrs["expires"], attrs["notBefore"], expires, notBefore)
		}
		for _, k := range []string{"exp", "nbf"} {
			if _, ok := attrs[k]; ok {
				t.Fatalf("%s attributes has the REST name %s: %v", what, k, attrs)
			}
		}
	}

	created := decode[map[string]any](t, mustRun(t, dir, "keyvault", "key", "create", "--vault-name", "timevault", "-n", "tk",
		"--expires", "2040-01-02T03:04:05Z", "--not-before", "2020-05-06T07:08:09Z"))
	checkAttrs("key create", created, "2040-01-02T03:04:05+00:00", "2020-05-06T07:08:09+00:00")
	shown := decode[map[string]any](t, mustRun(t, dir, "keyvault", "key", "show", "--vault-name", "timevault", "-n", "tk"))
	checkAttrs("key show", shown, "2040-01-02T03:04:05+00:00", "2020-05-06T07:08:09+00:00")
	if got := mustRun(t, dir, "keyvault", "key", "show", "--vault-name", "timevault", "-n", "tk", "--query", "attributes.expires", "-o", "tsv"); got != "2040-01-02T03:04:05+00:00\n" {
		t.Errorf("key show --query attributes.expires -o tsv = %q", got)
	}
	kid := shown["key"].(map[string]any)["kid"].(string)
	if got := mustRun(t, dir, "keyvault", "key", "show", "--vault-name", "timevault", "-n", "tk", "--query", "key.kid", "-o", "tsv"); got != kid+"\n" {
		t.Errorf("key show --query key.kid -o tsv = %q, want %q", got, kid)
	}
	// Without --expires and --not-before both are null, as az prints them.
	plain := decode[map[string]any](t, mustRun(t, dir, "keyvault", "key", "create", "--vault-name", "timevault", "-n", "plain"))
	checkAttrs("key create without dates", plain, nil, nil)
	if attrs := plain["attributes"].(map[string]any); !hasKey(attrs, "expires") || !hasKey(attrs, "notBefore") {
		t.Errorf("key create without dates: attributes lack expires or notBefore: %v", attrs)
	}

	for _, cmd := range [][]string{{"list", "--vault-name", "timevault"}, {"list-versions", "--vault-name", "timevault", "-n", "tk"}} {
		items := decode[[]map[string]any](t, mustRun(t, dir, append([]string{"keyvault", "key"}, cmd...)...))
		if len(items) == 0 {
			t.Fatalf("key %s: no items", cmd[0])
		}
		for _, it := range items {
			if it["name"] == "tk" {
				checkAttrs("key "+cmd[0], it, "2040-01-02T03:04:05+00:00", "2020-05-06T07:08:09+00:00")
			}
		}
	}

	del := decode[map[string]any](t, mustRun(t, dir, "keyvault", "key", "delete", "--vault-name", "timevault", "-n", "tk"))
	checkAttrs("key delete", del, "2040-01-02T03:04:05+00:00", "2020-05-06T07:08:09+00:00")
	recent("key delete deletedDate", del["deletedDate"])
	purge, _ := time.Parse(time.RFC3339, str(del["scheduledPurgeDate"]))
	deleted, _ := time.Parse(time.RFC3339, str(del["deletedDate"]))
	if !isoRe.MatchString(str(del["scheduledPurgeDate"])) || purge.Sub(deleted) != 7*24*time.Hour {
		t.Errorf("key delete scheduledPurgeDate = %#v, want deletedDate %v + 7 days", del["scheduledPurgeDate"], del["deletedDate"])
	}
	listed := decode[[]map[string]any](t, mustRun(t, dir, "keyvault", "key", "list-deleted", "--vault-name", "timevault"))
	if len(listed) != 1 || listed[0]["deletedDate"] != del["deletedDate"] || listed[0]["scheduledPurgeDate"] != del["scheduledPurgeDate"] {
		t.Fatalf("key list-deleted = %v, want the deleted key with the same dates as delete", listed)
	}
	checkAttrs("key list-deleted", listed[0], "2040-01-02T03:04:05+00:00", "2020-05-06T07:08:09+00:00")
	rec := decode[map[string]any](t, mustRun(t, dir, "keyvault", "key", "recover", "--vault-name", "timevault", "-n", "tk"))
	checkAttrs("key recover", rec, "2040-01-02T03:04:05+00:00", "2020-05-06T07:08:09+00:00")
}

func hasKey(m map[string]any, k string) bool { _, ok := m[k]; return ok }

func str(v any) string { s, _ := v.(string); return s }
