package compat_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"custody/keyvault"
	"custody/rm"
	"custody/server/servertest"
)

// ---- helpers ----

// miCredential is a managed identity's credential as a node would hold it:
// tokens come from the token service for the identity's principal.
type miCredential struct {
	ts          *servertest.TestServer
	principalID string
}

func (c miCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if len(opts.Scopes) == 0 {
		return azcore.AccessToken{}, errors.New("no scope")
	}
	tok, err := c.ts.Identity.ManagedIdentityToken(ctx, c.principalID, strings.TrimSuffix(opts.Scopes[0], "/.default"))
	if err != nil {
		return azcore.AccessToken{}, err
	}
	return azcore.AccessToken{Token: tok.Raw, ExpiresOn: tok.ExpiresAt}, nil
}

func spCredential(t testing.TB, ts *servertest.TestServer, clientID, secret string) azcore.TokenCredential {
	t.Helper()
	cred, err := azidentity.NewClientSecretCredential(ts.Admin.TenantID, clientID, secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            policy.ClientOptions{Cloud: cloudConfig(ts), Transport: ts.Client},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

func vaultURL(ts *servertest.TestServer, vault string) string { return ts.URL(vault + ".vault") }

func keysClient(t testing.TB, ts *servertest.TestServer, vault string, cred azcore.TokenCredential) *azkeys.Client {
	t.Helper()
	c, err := azkeys.NewClient(vaultURL(ts, vault), cred, &azkeys.ClientOptions{ClientOptions: policy.ClientOptions{Transport: ts.Client}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// vaultSpec is what a test vault is created with.
type vaultSpec struct {
	retentionDays   int32
	purgeProtection bool
	rbac            bool
	premium         bool
	policies        map[string][]string // object id -> key permissions
}

func mustKeyVault(t *testing.T, ts *servertest.TestServer, rg, name string, spec vaultSpec) *armkeyvault.Vault {
	t.Helper()
	client, err := armkeyvault.NewVaultsClient(ts.Admin.SubscriptionID, adminCredential(t, ts), armOptions(ts))
	if err != nil {
		t.Fatal(err)
	}
	props := &armkeyvault.VaultProperties{
		TenantID:                  to.Ptr(ts.Admin.TenantID),
		SKU:                       &armkeyvault.SKU{Family: to.Ptr(armkeyvault.SKUFamilyA), Name: to.Ptr(armkeyvault.SKUNameStandard)},
		EnableSoftDelete:          to.Ptr(true),
		SoftDeleteRetentionInDays: to.Ptr(spec.retentionDays),
		EnableRbacAuthorization:   to.Ptr(spec.rbac),
		AccessPolicies:            []*armkeyvault.AccessPolicyEntry{},
	}
	if spec.purgeProtection {
		props.EnablePurgeProtection = to.Ptr(true)
	}
	if spec.premium {
		props.SKU.Name = to.Ptr(armkeyvault.SKUNamePremium)
	}
	for oid, perms := range spec.policies {
		var kp []*armkeyvault.KeyPermissions
		for _, p := range perms {
			kp = append(kp, to.Ptr(armkeyvault.KeyPermissions(p)))
		}
		props.AccessPolicies = append(props.AccessPolicies, &armkeyvault.AccessPolicyEntry{
			TenantID: to.Ptr(ts.Admin.TenantID), ObjectID: to.Ptr(oid), Permissions: &armkeyvault.Permissions{Keys: kp},
		})
	}
	poller, err := client.BeginCreateOrUpdate(context.Background(), rg, name, armkeyvault.VaultCreateOrUpdateParameters{
		Location: to.Ptr("westus2"), Properties: props,
	}, nil)
	if err != nil {
		t.Fatalf("create vault %s: %v", name, err)
	}
	res, err := poller.PollUntilDone(context.Background(), &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("create vault %s: %v", name, err)
	}
	return &res.Vault
}

// wantKVError checks err is a Key Vault error with this status, code and
// (if inner != "") inner error code.
func wantKVError(t testing.TB, what string, err error, status int, code, inner string) {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("%s: err = %v, want a %d %s response", what, err, status, code)
	}
	if re.StatusCode != status || re.ErrorCode != code {
		t.Fatalf("%s: got %d %s, want %d %s", what, re.StatusCode, re.ErrorCode, status, code)
	}
	if inner != "" {
		var body struct {
			Error struct {
				InnerError struct {
					Code string `json:"code"`
				} `json:"innererror"`
			} `json:"error"`
		}
		raw, _ := io.ReadAll(re.RawResponse.Body)
		if err := json.Unmarshal(raw, &body); err != nil || body.Error.InnerError.Code != inner {
			t.Fatalf("%s: inner error = %q (body %s), want %q", what, body.Error.InnerError.Code, raw, inner)
		}
	}
}

var hexVersion = regexp.MustCompile(`^[0-9a-f]{32}$`)

func oaepParams(v []byte) azkeys.KeyOperationParameters {
	return azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: v}
}

func kvRaw(t testing.TB, ts *servertest.TestServer, token, method, vault, path, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, vaultURL(ts, vault)+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return MustSend(t, ts, req)
}

func vaultToken(t testing.TB, ts *servertest.TestServer) string {
	return MustToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, "https://vault."+ts.Endpoint.Domain+":"+portOf(ts)+"/.default")
}

func portOf(ts *servertest.TestServer) string {
	u := ts.URL("")
	return u[strings.LastIndexByte(u, ':')+1:]
}

// ---- the seed scenario and the full API ----

// TestKeyVaultKeys walks the batch customer-managed-key set-up (a vault with
// soft delete and purge protection, an identity allowed exactly get, wrapKey
// and unwrapKey, an RSA-2048 key, its identifier, a new version) and then
// every keys operation through the real azkeys client.
func TestKeyVaultKeys(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	tok := adminToken(t, ts)
	MustGroup(t, ts, tok, "rg-cmk")
	mi := MustIdentity(t, ts, tok, "rg-cmk", "id-cmk")
	stranger := MustServicePrincipal(t, ts, "no-policy")
	adminOID := adminObjectID(t, ts)

	mustKeyVault(t, ts, "rg-cmk", "kv-cmk", vaultSpec{retentionDays: 90, purgeProtection: true, policies: map[string][]string{
		adminOID: {"all"},
		mi:       {"get", "wrapKey", "unwrapKey"},
	}})
	admin := keysClient(t, ts, "kv-cmk", adminCredential(t, ts))
	node := keysClient(t, ts, "kv-cmk", miCredential{ts, mi})
	nobody := keysClient(t, ts, "kv-cmk", spCredential(t, ts, stranger.ClientID, stranger.Secret))

	// az keyvault key create --kty RSA --size 2048 --ops wrapKey unwrapKey
	created, err := admin.CreateKey(ctx, "cmk", azkeys.CreateKeyParameters{
		Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr[int32](2048),
		KeyOps: []*azkeys.KeyOperation{to.Ptr(azkeys.KeyOperationWrapKey), to.Ptr(azkeys.KeyOperationUnwrapKey)},
	}, nil)
	if err != nil {
		t.Fatalf("create key: %v", err)
	}
	kid := *created.Key.KID
	v1 := kid.Version()
	if kid.Name() != "cmk" || !hexVersion.MatchString(v1) {
		t.Fatalf("kid = %s: name %q, version %q", kid, kid.Name(), v1)
	}
	if want := vaultURL(ts, "kv-cmk") + "/keys/cmk/" + v1; string(kid) != want {
		t.Fatalf("kid = %s, want %s", kid, want)
	}
	if got := *created.Attributes.RecoveryLevel; got != "Recoverable" {
		t.Fatalf("recoveryLevel = %s, want Recoverable (90 days, purge protection)", got)
	}
	if *created.Attributes.RecoverableDays != 90 || created.Attributes.Created == nil || len(created.Key.N) != 256 {
		t.Fatalf("attributes/key = %+v / n %d bytes", created.Attributes, len(created.Key.N))
	}

	// Latest (GET /keys/cmk/) and by version.
	for _, v := range []string{"", v1} {
		got, err := node.GetKey(ctx, "cmk", v, nil)
		if err != nil {
			t.Fatalf("identity get key %q: %v", v, err)
		}
		if got.Key.KID.Version() != v1 {
			t.Fatalf("get %q = %s", v, *got.Key.KID)
		}
	}

	// The identity can wrap and unwrap, and nothing else.
	dek := bytes.Repeat([]byte{7}, 32)
	wrapped, err := node.WrapKey(ctx, "cmk", "", oaepParams(dek), nil)
	if err != nil {
		t.Fatalf("identity wrap: %v", err)
	}
	if wrapped.KID.Version() != v1 || len(wrapped.Result) != 256 {
		t.Fatalf("wrap result kid %s, %d bytes", *wrapped.KID, len(wrapped.Result))
	}
	unwrapped, err := node.UnwrapKey(ctx, "cmk", v1, oaepParams(wrapped.Result), nil)
	if err != nil || !bytes.Equal(unwrapped.Result, dek) {
		t.Fatalf("identity unwrap = %x, %v", unwrapped.Result, err)
	}
	for name, call := range everyOperation("cmk", v1, wrapped.Result) {
		switch name {
		case "get", "getLatest", "wrapKey", "unwrapKey":
			continue
		}
		err := call(ctx, node)
		wantKVError(t, "identity "+name, err, 403, "Forbidden", "ForbiddenByPolicy")
		if !strings.Contains(err.Error(), "does not have keys") {
			t.Fatalf("identity %s: message %v", name, err)
		}
	}
	// A principal without any policy is refused everything.
	for name, call := range everyOperation("cmk", v1, wrapped.Result) {
		wantKVError(t, "stranger "+name, call(ctx, nobody), 403, "Forbidden", "ForbiddenByPolicy")
	}

	// A new version; the versionless id follows it, the old one still works.
	second, err := admin.CreateKey(ctx, "cmk", azkeys.CreateKeyParameters{
		Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr[int32](2048),
		KeyOps: []*azkeys.KeyOperation{to.Ptr(azkeys.KeyOperationWrapKey), to.Ptr(azkeys.KeyOperationUnwrapKey)},
	}, nil)
	if err != nil {
		t.Fatalf("new version: %v", err)
	}
	v2 := second.Key.KID.Version()
	if v2 == v1 {
		t.Fatal("new version has the old version id")
	}
	wrapped2, err := node.WrapKey(ctx, "cmk", "", oaepParams(dek), nil)
	if err != nil || wrapped2.KID.Version() != v2 {
		t.Fatalf("wrap with latest after new version: %v, %v", wrapped2.KID, err)
	}
	if r, err := node.UnwrapKey(ctx, "cmk", v1, oaepParams(wrapped.Result), nil); err != nil || !bytes.Equal(r.Result, dek) {
		t.Fatalf("unwrap with old version: %v", err)
	}
	var versions []string
	for pager := admin.NewListKeyPropertiesVersionsPager("cmk", nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list versions: %v", err)
		}
		for _, p := range page.Value {
			versions = append(versions, p.KID.Version())
		}
	}
	if !slices.Equal(versions, []string{v1, v2}) {
		t.Fatalf("versions = %v, want [%s %s]", versions, v1, v2)
	}

	// Update: disable a version, limit its operations, expire it.
	if _, err := admin.UpdateKey(ctx, "cmk", v1, azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: to.Ptr(false)}}, nil); err != nil {
		t.Fatalf("disable: %v", err)
	}
	_, err = node.UnwrapKey(ctx, "cmk", v1, oaepParams(wrapped.Result), nil)
	wantKVError(t, "unwrap with disabled version", err, 403, "Forbidden", "KeyDisabled")
	_, err = node.GetKey(ctx, "cmk", v1, nil)
	wantKVError(t, "get disabled version", err, 403, "Forbidden", "KeyDisabled")
	if _, err := admin.UpdateKey(ctx, "cmk", v1, azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: to.Ptr(true)},
		KeyOps: []*azkeys.KeyOperation{to.Ptr(azkeys.KeyOperationUnwrapKey)}}, nil); err != nil {
		t.Fatalf("enable and limit ops: %v", err)
	}
	_, err = node.WrapKey(ctx, "cmk", v1, oaepParams(dek), nil)
	wantKVError(t, "wrap with unwrap-only version", err, 403, "Forbidden", "KeyOperationForbidden")
	if r, err := node.UnwrapKey(ctx, "cmk", v1, oaepParams(wrapped.Result), nil); err != nil || !bytes.Equal(r.Result, dek) {
		t.Fatalf("unwrap after re-enable: %v", err)
	}
	past := time.Now().Add(-time.Hour)
	upd, err := admin.UpdateKey(ctx, "cmk", "", azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Expires: &past},
		Tags: map[string]*string{"purpose": to.Ptr("cmk")}}, nil)
	if err != nil || upd.Key.KID.Version() != v2 || *upd.Tags["purpose"] != "cmk" {
		t.Fatalf("update latest (PATCH /keys/cmk/): %v", err)
	}
	_, err = node.WrapKey(ctx, "cmk", "", oaepParams(dek), nil)
	wantKVError(t, "wrap with expired version", err, 403, "Forbidden", "KeyExpired")
	future := time.Now().Add(365 * 24 * time.Hour)
	if _, err := admin.UpdateKey(ctx, "cmk", "", azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Expires: &future}}, nil); err != nil {
		t.Fatal(err)
	}

	// List keys: versionless ids.
	var kids []string
	for pager := admin.NewListKeyPropertiesPager(nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list keys: %v", err)
		}
		for _, p := range page.Value {
			kids = append(kids, string(*p.KID))
		}
	}
	if !slices.Equal(kids, []string{vaultURL(ts, "kv-cmk") + "/keys/cmk"}) {
		t.Fatalf("list keys = %v", kids)
	}

	// Delete, then every version comes back on recover.
	deleted, err := admin.DeleteKey(ctx, "cmk", nil)
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if deleted.RecoveryID == nil || *deleted.RecoveryID != vaultURL(ts, "kv-cmk")+"/deletedkeys/cmk" || deleted.DeletedDate == nil ||
		deleted.ScheduledPurgeDate == nil || deleted.ScheduledPurgeDate.Sub(*deleted.DeletedDate) != 90*24*time.Hour {
		t.Fatalf("deleted key = %+v", deleted.DeletedKey)
	}
	_, err = node.UnwrapKey(ctx, "cmk", v1, oaepParams(wrapped.Result), nil)
	wantKVError(t, "unwrap deleted key", err, 404, "KeyNotFound", "")
	_, err = admin.CreateKey(ctx, "cmk", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA)}, nil)
	wantKVError(t, "create over deleted key", err, 409, "Conflict", "ObjectIsDeletedButRecoverable")
	if _, err := admin.GetDeletedKey(ctx, "cmk", nil); err != nil {
		t.Fatalf("get deleted: %v", err)
	}
	n := 0
	for pager := admin.NewListDeletedKeyPropertiesPager(nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list deleted: %v", err)
		}
		n += len(page.Value)
	}
	if n != 1 {
		t.Fatalf("list deleted found %d keys, want 1", n)
	}
	_, err = admin.PurgeDeletedKey(ctx, "cmk", nil)
	wantKVError(t, "purge under purge protection", err, 403, "Forbidden", "")
	if _, err := admin.RecoverDeletedKey(ctx, "cmk", nil); err != nil {
		t.Fatalf("recover: %v", err)
	}
	for _, c := range []struct {
		version string
		blob    []byte
	}{{v1, wrapped.Result}, {v2, wrapped2.Result}} {
		if r, err := node.UnwrapKey(ctx, "cmk", c.version, oaepParams(c.blob), nil); err != nil || !bytes.Equal(r.Result, dek) {
			t.Fatalf("unwrap with %s after recover: %v", c.version, err)
		}
	}

	// Rotation: a new version of the same shape; policies.
	rotated, err := admin.RotateKey(ctx, "cmk", nil)
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if v := rotated.Key.KID.Version(); v == v2 || len(rotated.Key.N) != 256 || len(rotated.Key.KeyOps) != 2 {
		t.Fatalf("rotated key = %s, %d-byte modulus, ops %d", v, len(rotated.Key.N), len(rotated.Key.KeyOps))
	}
	pol, err := admin.GetKeyRotationPolicy(ctx, "cmk", nil)
	if err != nil || len(pol.LifetimeActions) != 1 || *pol.LifetimeActions[0].Action.Type != azkeys.KeyRotationPolicyActionNotify {
		t.Fatalf("default rotation policy = %+v, %v", pol, err)
	}
	newPol, err := admin.UpdateKeyRotationPolicy(ctx, "cmk", azkeys.KeyRotationPolicy{
		Attributes: &azkeys.KeyRotationPolicyAttributes{ExpiryTime: to.Ptr("P90D")},
		LifetimeActions: []*azkeys.LifetimeAction{{
			Trigger: &azkeys.LifetimeActionTrigger{TimeAfterCreate: to.Ptr("P30D")},
			Action:  &azkeys.LifetimeActionType{Type: to.Ptr(azkeys.KeyRotationPolicyActionRotate)},
		}},
	}, nil)
	if err != nil {
		t.Fatalf("update rotation policy: %v", err)
	}
	if len(newPol.LifetimeActions) != 2 || *newPol.LifetimeActions[1].Trigger.TimeBeforeExpiry != "P30D" || *newPol.Attributes.ExpiryTime != "P90D" {
		t.Fatalf("updated policy = %s", mustJSON(newPol.KeyRotationPolicy))
	}
	_, err = admin.UpdateKeyRotationPolicy(ctx, "cmk", azkeys.KeyRotationPolicy{LifetimeActions: []*azkeys.LifetimeAction{{
		Trigger: &azkeys.LifetimeActionTrigger{TimeAfterCreate: to.Ptr("P1D")},
		Action:  &azkeys.LifetimeActionType{Type: to.Ptr(azkeys.KeyRotationPolicyActionRotate)},
	}}}, nil)
	wantKVError(t, "rotation after one day", err, 400, "BadParameter", "")

	// The audit log saw the identity's calls, refusals included.
	recs, err := ts.KeyVault.ListAudit(ctx, keyvault.AuditFilter{VaultName: "kv-cmk", KeyName: "cmk"})
	if err != nil {
		t.Fatal(err)
	}
	var sawWrap, sawRefusal bool
	for i, r := range recs {
		if i > 0 && r.ID >= recs[i-1].ID {
			t.Fatalf("audit ids not descending: %d then %d", recs[i-1].ID, r.ID)
		}
		if r.CallerOID == mi && r.Operation == "KeyWrap" && r.Outcome == "success" && r.Version != "" {
			sawWrap = true
		}
		if r.CallerOID == mi && r.Outcome == "Forbidden/ForbiddenByPolicy" {
			sawRefusal = true
		}
	}
	if !sawWrap || !sawRefusal || recs[0].Operation != "KeyRotationPolicySet" {
		t.Fatalf("audit log lacks the identity's wrap or refusal (or is not newest first): %d records, first %+v", len(recs), recs[0])
	}
}

// everyOperation returns a call of every keys operation on key name.
func everyOperation(name, version string, wrapped []byte) map[string]func(context.Context, *azkeys.Client) error {
	digest := sha256.Sum256([]byte("m"))
	return map[string]func(context.Context, *azkeys.Client) error{
		"get": func(ctx context.Context, c *azkeys.Client) error {
			_, err := c.GetKey(ctx, name, version, nil)
			return err
		},
		"getLatest": func(ctx context.Context, c *azkeys.Client) error { _, err := c.GetKey(ctx, name, "", nil); return err },
		"wrapKey": func(ctx context.Context, c *azkeys.Client) error {
			_, err := c.WrapKey(ctx, name, version, oaepParams([]byte("k")), nil)
			return err
		},
		"unwrapKey": func(ctx context.Context, c *azkeys.Client) error {
			_, err := c.UnwrapKey(ctx, name, version, oaepParams(wrapped), nil)
			return err
		},
		"encrypt": func(ctx context.Context, c *azkeys.Client) error {
			_, err := c.Encrypt(ctx, name, version, oaepParams([]byte("k")), nil)
			return err
		},
		"decrypt": func(ctx context.Context, c *azkeys.Client) error {
			_, err := c.Decrypt(ctx, name, version, oaepParams(wrapped), nil)
			return err
		},
		"sign": func(ctx context.Context, c *azkeys.Client) error {
			_, err := c.Sign(ctx, name, version, azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmRS256), Value: digest[:]}, nil)
			return err
		},
		"verify": func(ctx context.Context, c *azkeys.Client) error {
			_, err := c.Verify(ctx, name, version, azkeys.VerifyParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmRS256), Digest: digest[:], Signature: make([]byte, 256)}, nil)
			return err
		},
		"create": func(ctx context.Context, c *azkeys.Client) error {
			_, err := c.CreateKey(ctx, name, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeEC)}, nil)
			return err
		},
		"import": func(ctx context.Context, c *azkeys.Client) error {
			_, err := c.ImportKey(ctx, name, azkeys.ImportKeyParameters{Key: &azkeys.JSONWebKey{Kty: to.Ptr(azkeys.KeyTypeEC)}}, nil)
			return err
		},
		"update": func(ctx context.Context, c *azkeys.Client) error {
			_, err := c.UpdateKey(ctx, name, version, azkeys.UpdateKeyParameters{Tags: map[string]*string{"a": to.Ptr("b")}}, nil)
			return err
		},
		"list": func(ctx context.Context, c *azkeys.Client) error {
			_, err := c.NewListKeyPropertiesPager(nil).NextPage(ctx)
			return err
		},
		"listVersions": func(ctx context.Context, c *azkeys.Client) error {
			_, err := c.NewListKeyPropertiesVersionsPager(name, nil).NextPage(ctx)
			return err
		},
		"listDeleted": func(ctx context.Context, c *azkeys.Client) error {
			_, err := c.NewListDeletedKeyPropertiesPager(nil).NextPage(ctx)
			return err
		},
		"delete": func(ctx context.Context, c *azkeys.Client) error { _, err := c.DeleteKey(ctx, name, nil); return err },
		"backup": func(ctx context.Context, c *azkeys.Client) error { _, err := c.BackupKey(ctx, name, nil); return err },
		"restore": func(ctx context.Context, c *azkeys.Client) error {
			_, err := c.RestoreKey(ctx, azkeys.RestoreKeyParameters{KeyBackup: []byte("x")}, nil)
			return err
		},
		"rotate": func(ctx context.Context, c *azkeys.Client) error { _, err := c.RotateKey(ctx, name, nil); return err },
		"getRotationPolicy": func(ctx context.Context, c *azkeys.Client) error {
			_, err := c.GetKeyRotationPolicy(ctx, name, nil)
			return err
		},
		"setRotationPolicy": func(ctx context.Context, c *azkeys.Client) error {
			_, err := c.UpdateKeyRotationPolicy(ctx, name, azkeys.KeyRotationPolicy{}, nil)
			return err
		},
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func adminObjectID(t testing.TB, ts *servertest.TestServer) string {
	t.Helper()
	p, err := ts.Identity.Store.PrincipalByAppID(context.Background(), ts.Admin.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	return p.ObjectID
}

// TestKeyVaultKeyTypesAndCrypto creates and imports every supported key type
// and runs every algorithm, and checks that no private key bytes reach the
// database files.
func TestKeyVaultKeyTypesAndCrypto(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	tok := adminToken(t, ts)
	MustGroup(t, ts, tok, "rg")
	mustKeyVault(t, ts, "rg", "kv-types", vaultSpec{retentionDays: 7, policies: map[string][]string{adminObjectID(t, ts): {"all"}}})
	c := keysClient(t, ts, "kv-types", adminCredential(t, ts))

	sizes := []int32{2048, 3072}
	if !testing.Short() {
		sizes = append(sizes, 4096)
	}
	for _, size := range sizes {
		for _, kty := range []azkeys.KeyType{azkeys.KeyTypeRSA} {
			name := "rsa-" + strings.ToLower(string(kty)) + "-" + strconv.Itoa(int(size))
			k, err := c.CreateKey(ctx, name, azkeys.CreateKeyParameters{Kty: to.Ptr(kty), KeySize: to.Ptr(size)}, nil)
			if err != nil {
				t.Fatalf("create %s: %v", name, err)
			}
			if *k.Key.Kty != kty || len(k.Key.N)*8 != int(size) || len(k.Key.KeyOps) != 6 {
				t.Fatalf("%s: kty %s, %d bits, ops %d", name, *k.Key.Kty, len(k.Key.N)*8, len(k.Key.KeyOps))
			}
			if *k.Attributes.RecoveryLevel != "CustomizedRecoverable+Purgeable" || *k.Attributes.RecoverableDays != 7 {
				t.Fatalf("recovery level %s/%d, want CustomizedRecoverable+Purgeable/7", *k.Attributes.RecoveryLevel, *k.Attributes.RecoverableDays)
			}
			roundTrips(t, c, name, &rsa.PublicKey{N: bigInt(k.Key.N), E: int(bigInt(k.Key.E).Int64())})
		}
	}
	for _, crv := range []azkeys.CurveName{azkeys.CurveNameP256, azkeys.CurveNameP384, azkeys.CurveNameP521} {
		for _, kty := range []azkeys.KeyType{azkeys.KeyTypeEC} {
			name := "ec-" + strings.ToLower(string(kty)) + "-" + strings.ToLower(string(crv))
			k, err := c.CreateKey(ctx, name, azkeys.CreateKeyParameters{Kty: to.Ptr(kty), Curve: to.Ptr(crv)}, nil)
			if err != nil {
				t.Fatalf("create %s: %v", name, err)
			}
			if *k.Key.Crv != crv || len(k.Key.KeyOps) != 2 {
				t.Fatalf("%s: %+v", name, k.Key)
			}
			alg := map[azkeys.CurveName]azkeys.SignatureAlgorithm{azkeys.CurveNameP256: azkeys.SignatureAlgorithmES256,
				azkeys.CurveNameP384: azkeys.SignatureAlgorithmES384, azkeys.CurveNameP521: azkeys.SignatureAlgorithmES512}[crv]
			signVerify(t, c, name, alg)
			_, err = c.WrapKey(ctx, name, "", oaepParams([]byte("k")), nil)
			wantKVError(t, "wrap with EC key", err, 403, "Forbidden", "KeyOperationForbidden")
		}
	}
	_, err := c.CreateKey(ctx, "bad", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr[int32](1024)}, nil)
	wantKVError(t, "create 1024-bit key", err, 400, "BadParameter", "")
	_, err = c.CreateKey(ctx, "bad_name", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA)}, nil)
	wantKVError(t, "create with bad name", err, 400, "BadParameter", "")

	// HSM keys: a standard vault refuses them, as Azure does; a premium
	// vault on a server without an HSM (no PKCS#11 root key) too.
	for _, kty := range []azkeys.KeyType{azkeys.KeyTypeRSAHSM, azkeys.KeyTypeECHSM} {
		_, err := c.CreateKey(ctx, "hsm", azkeys.CreateKeyParameters{Kty: to.Ptr(kty)}, nil)
		wantKVError(t, "create "+string(kty)+" in a standard vault", err, 400, "BadParameter", "")
		if !strings.Contains(err.Error(), "Hardware key operation not allowed on standard vault") {
			t.Fatalf("create %s in a standard vault: %v", kty, err)
		}
	}
	mustKeyVault(t, ts, "rg", "kv-premium", vaultSpec{retentionDays: 7, premium: true, policies: map[string][]string{adminObjectID(t, ts): {"all"}}})
	pc := keysClient(t, ts, "kv-premium", adminCredential(t, ts))
	for _, kty := range []azkeys.KeyType{azkeys.KeyTypeRSAHSM, azkeys.KeyTypeECHSM} {
		_, err := pc.CreateKey(ctx, "hsm", azkeys.CreateKeyParameters{Kty: to.Ptr(kty)}, nil)
		wantKVError(t, "create "+string(kty)+" without an HSM", err, 400, "BadParameter", "")
		if !strings.Contains(err.Error(), "has no hardware security module") {
			t.Fatalf("create %s on a server without an HSM: %v", kty, err)
		}
	}

	// Import an RSA key whose private parts we know. As HSM it is refused
	// here (no HSM); as a software key it is kept.
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	priv.Precompute()
	_, err = pc.ImportKey(ctx, "imported", azkeys.ImportKeyParameters{HSM: to.Ptr(true), Key: &azkeys.JSONWebKey{
		Kty: to.Ptr(azkeys.KeyTypeRSA), N: priv.N.Bytes(), E: []byte{1, 0, 1}, D: priv.D.Bytes(), P: priv.Primes[0].Bytes(), Q: priv.Primes[1].Bytes()}}, nil)
	wantKVError(t, "import as HSM without an HSM", err, 400, "BadParameter", "")
	imp, err := c.ImportKey(ctx, "imported", azkeys.ImportKeyParameters{Key: &azkeys.JSONWebKey{
		Kty: to.Ptr(azkeys.KeyTypeRSA), N: priv.N.Bytes(), E: []byte{1, 0, 1}, D: priv.D.Bytes(),
		P: priv.Primes[0].Bytes(), Q: priv.Primes[1].Bytes(), DP: priv.Precomputed.Dp.Bytes(), DQ: priv.Precomputed.Dq.Bytes(), QI: priv.Precomputed.Qinv.Bytes(),
	}}, nil)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if *imp.Key.Kty != azkeys.KeyTypeRSA || !bytes.Equal(imp.Key.N, priv.N.Bytes()) || imp.Key.D != nil {
		t.Fatalf("imported key: kty %s, same modulus %v, d returned %v", *imp.Key.Kty, bytes.Equal(imp.Key.N, priv.N.Bytes()), imp.Key.D != nil)
	}
	roundTrips(t, c, "imported", &priv.PublicKey)
	// A signature made here verifies with our own key: the server used the
	// imported material.
	digest := sha256.Sum256([]byte("hello"))
	sig, err := c.Sign(ctx, "imported", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmRS256), Value: digest[:]}, nil)
	if err != nil || rsa.VerifyPKCS1v15(&priv.PublicKey, crypto.SHA256, digest[:], sig.Result) != nil {
		t.Fatalf("sign with imported key does not verify locally: %v", err)
	}
	ecPriv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := c.ImportKey(ctx, "imported-ec", azkeys.ImportKeyParameters{Key: &azkeys.JSONWebKey{
		Kty: to.Ptr(azkeys.KeyTypeEC), Crv: to.Ptr(azkeys.CurveNameP256), D: ecPriv.D.FillBytes(make([]byte, 32)),
		X: ecPriv.X.FillBytes(make([]byte, 32)), Y: ecPriv.Y.FillBytes(make([]byte, 32)),
	}}, nil); err != nil {
		t.Fatalf("import EC: %v", err)
	}
	signVerify(t, c, "imported-ec", azkeys.SignatureAlgorithmES256)
	_, err = c.ImportKey(ctx, "bad-import", azkeys.ImportKeyParameters{Key: &azkeys.JSONWebKey{Kty: to.Ptr(azkeys.KeyTypeRSA), N: priv.N.Bytes(), E: []byte{1, 0, 1}}}, nil)
	wantKVError(t, "import without private parts", err, 400, "BadParameter", "")

	// No private key bytes in the database files.
	ts.KeyVault.FlushAudit()
	var files [][]byte
	for _, f := range []string{"custody.db", "custody.db-wal"} {
		b, err := os.ReadFile(filepath.Join(ts.DataDir(), f))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		files = append(files, b)
	}
	if len(files[0])+len(files[1]) == 0 {
		t.Fatal("no database files to scan")
	}
	all := append(files[0], files[1]...)
	if !bytes.Contains(all, []byte(base64.RawURLEncoding.EncodeToString(priv.N.Bytes()))) {
		t.Fatal("scan is not looking at the right files: the public modulus is not in them")
	}
	for i, secret := range [][]byte{priv.Primes[0].Bytes(), priv.D.Bytes(), ecPriv.D.FillBytes(make([]byte, 32))} {
		// Raw big-endian bytes, and the base64 forms a JSON field would hold.
		for _, form := range [][]byte{secret[:32], []byte(base64.RawURLEncoding.EncodeToString(secret)[:40]), []byte(base64.StdEncoding.EncodeToString(secret)[:40])} {
			if bytes.Contains(all, form) {
				t.Fatalf("private key part %d found in the database files", i)
			}
		}
	}
}

func bigInt(b []byte) *big.Int { return new(big.Int).SetBytes(b) }

// roundTrips runs encrypt/decrypt and wrap/unwrap with every RSA algorithm
// and checks that the server's ciphertexts decrypt and ours are accepted.
func roundTrips(t *testing.T, c *azkeys.Client, name string, pub *rsa.PublicKey) {
	t.Helper()
	ctx := context.Background()
	for _, alg := range []azkeys.EncryptionAlgorithm{azkeys.EncryptionAlgorithmRSAOAEP, azkeys.EncryptionAlgorithmRSAOAEP256, azkeys.EncryptionAlgorithmRSA15} {
		msg := []byte("a 32-byte data encryption key..")
		enc, err := c.Encrypt(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(alg), Value: msg}, nil)
		if err != nil {
			t.Fatalf("%s encrypt %s: %v", name, alg, err)
		}
		dec, err := c.Decrypt(ctx, name, enc.KID.Version(), azkeys.KeyOperationParameters{Algorithm: to.Ptr(alg), Value: enc.Result}, nil)
		if err != nil || !bytes.Equal(dec.Result, msg) {
			t.Fatalf("%s decrypt %s: %v", name, alg, err)
		}
		var local []byte
		switch alg {
		case azkeys.EncryptionAlgorithmRSAOAEP256:
			local, _ = rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, msg, nil)
		case azkeys.EncryptionAlgorithmRSA15:
			local, _ = rsa.EncryptPKCS1v15(rand.Reader, pub, msg)
		default:
			continue
		}
		un, err := c.UnwrapKey(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(alg), Value: local}, nil)
		if err != nil || !bytes.Equal(un.Result, msg) {
			t.Fatalf("%s unwrap of a locally wrapped key with %s: %v", name, alg, err)
		}
	}
	_, err := c.Decrypt(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: []byte("garbage")}, nil)
	wantKVError(t, "decrypt garbage", err, 400, "BadParameter", "")
	for _, alg := range []azkeys.SignatureAlgorithm{azkeys.SignatureAlgorithmRS256, azkeys.SignatureAlgorithmRS384, azkeys.SignatureAlgorithmRS512,
		azkeys.SignatureAlgorithmPS256, azkeys.SignatureAlgorithmPS384, azkeys.SignatureAlgorithmPS512} {
		signVerify(t, c, name, alg)
	}
}

func signVerify(t *testing.T, c *azkeys.Client, name string, alg azkeys.SignatureAlgorithm) {
	t.Helper()
	ctx := context.Background()
	var digest []byte
	switch string(alg)[2:] {
	case "256":
		d := sha256.Sum256([]byte("message"))
		digest = d[:]
	case "384":
		d := sha512.Sum384([]byte("message"))
		digest = d[:]
	default:
		d := sha512.Sum512([]byte("message"))
		digest = d[:]
	}
	sig, err := c.Sign(ctx, name, "", azkeys.SignParameters{Algorithm: to.Ptr(alg), Value: digest}, nil)
	if err != nil {
		t.Fatalf("%s sign %s: %v", name, alg, err)
	}
	ok, err := c.Verify(ctx, name, "", azkeys.VerifyParameters{Algorithm: to.Ptr(alg), Digest: digest, Signature: sig.Result}, nil)
	if err != nil || !*ok.Value {
		t.Fatalf("%s verify %s: %v, %v", name, alg, ok.Value, err)
	}
	bad := slices.Clone(sig.Result)
	bad[len(bad)/2] ^= 1
	ok, err = c.Verify(ctx, name, "", azkeys.VerifyParameters{Algorithm: to.Ptr(alg), Digest: digest, Signature: bad}, nil)
	if err != nil || *ok.Value {
		t.Fatalf("%s verify of a damaged %s signature = %v, %v; want false", name, alg, ok.Value, err)
	}
}

// TestKeyVaultBackupRestorePurge backs a key up, restores it into another
// vault, and purges it: its rows are gone from the database.
func TestKeyVaultBackupRestorePurge(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	tok := adminToken(t, ts)
	MustGroup(t, ts, tok, "rg")
	admin := adminObjectID(t, ts)
	mustKeyVault(t, ts, "rg", "kv-src", vaultSpec{retentionDays: 90, purgeProtection: true, policies: map[string][]string{admin: {"all"}}})
	mustKeyVault(t, ts, "rg", "kv-dst", vaultSpec{retentionDays: 7, policies: map[string][]string{admin: {"get", "list", "delete", "purge", "restore", "recover", "unwrapKey", "wrapKey"}}})
	src := keysClient(t, ts, "kv-src", adminCredential(t, ts))
	dst := keysClient(t, ts, "kv-dst", adminCredential(t, ts))

	k, err := src.CreateKey(ctx, "k1", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), Tags: map[string]*string{"t": to.Ptr("v")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := src.WrapKey(ctx, "k1", "", oaepParams([]byte("dek")), nil)
	if err != nil {
		t.Fatal(err)
	}
	backup, err := src.BackupKey(ctx, "k1", nil)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	_, err = src.RestoreKey(ctx, azkeys.RestoreKeyParameters{KeyBackup: backup.Value}, nil)
	wantKVError(t, "restore over an existing key", err, 409, "Conflict", "")
	restored, err := dst.RestoreKey(ctx, azkeys.RestoreKeyParameters{KeyBackup: backup.Value}, nil)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if restored.Key.KID.Version() != k.Key.KID.Version() || *restored.Tags["t"] != "v" || !strings.Contains(string(*restored.Key.KID), "kv-dst.vault.") {
		t.Fatalf("restored key = %s tags %v", *restored.Key.KID, restored.Tags)
	}
	if r, err := dst.UnwrapKey(ctx, "k1", k.Key.KID.Version(), oaepParams(w.Result), nil); err != nil || string(r.Result) != "dek" {
		t.Fatalf("unwrap in the restored copy: %v", err)
	}
	_, err = dst.RestoreKey(ctx, azkeys.RestoreKeyParameters{KeyBackup: []byte("not a backup")}, nil)
	wantKVError(t, "restore garbage", err, 400, "BadParameter", "")

	// Delete and purge in the vault without purge protection.
	if _, err := dst.DeleteKey(ctx, "k1", nil); err != nil {
		t.Fatal(err)
	}
	_, err = dst.RestoreKey(ctx, azkeys.RestoreKeyParameters{KeyBackup: backup.Value}, nil)
	wantKVError(t, "restore over a deleted key", err, 409, "Conflict", "ObjectIsDeletedButRecoverable")
	if _, err := dst.PurgeDeletedKey(ctx, "k1", nil); err != nil {
		t.Fatalf("purge: %v", err)
	}
	var rows int
	if err := ts.DB.SQL().QueryRow(`SELECT COUNT(*) FROM kv_key_versions WHERE vault_key = 'kv-dst'`).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("key versions left after purge: %d (%v)", rows, err)
	}
	_, err = dst.GetDeletedKey(ctx, "k1", nil)
	wantKVError(t, "get purged key", err, 404, "KeyNotFound", "")
	// A purged name is free again: the backup restores.
	if _, err := dst.RestoreKey(ctx, azkeys.RestoreKeyParameters{KeyBackup: backup.Value}, nil); err != nil {
		t.Fatalf("restore after purge: %v", err)
	}
}

// TestKeyVaultRBAC checks a vault with role-based access: a principal
// without a role is refused, Key Vault Crypto Service Encryption User may
// read, wrap and unwrap and nothing else.
func TestKeyVaultRBAC(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	tok := adminToken(t, ts)
	MustGroup(t, ts, tok, "rg")
	v := mustKeyVault(t, ts, "rg", "kv-rbac", vaultSpec{retentionDays: 90, rbac: true})
	MustAssign(t, ts, tok, *v.ID, rm.RoleKeyVaultCryptoOfficer, adminObjectID(t, ts))
	admin := keysClient(t, ts, "kv-rbac", adminCredential(t, ts))
	if _, err := admin.CreateKey(ctx, "k", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA)}, nil); err != nil {
		t.Fatalf("officer create: %v", err)
	}
	sp := MustServicePrincipal(t, ts, "app")
	app := keysClient(t, ts, "kv-rbac", spCredential(t, ts, sp.ClientID, sp.Secret))
	_, err := app.WrapKey(ctx, "k", "", oaepParams([]byte("x")), nil)
	wantKVError(t, "wrap without role", err, 403, "Forbidden", "ForbiddenByRbac")
	if !strings.Contains(err.Error(), "Microsoft.KeyVault/vaults/keys/wrap/action") {
		t.Fatalf("RBAC refusal does not name the action: %v", err)
	}
	MustAssign(t, ts, tok, *v.ID+"/keys/k", rm.RoleKeyVaultCryptoServiceEncUse, sp.ObjectID)
	w, err := app.WrapKey(ctx, "k", "", oaepParams([]byte("x")), nil)
	if err != nil {
		t.Fatalf("wrap with role: %v", err)
	}
	if _, err := app.UnwrapKey(ctx, "k", "", oaepParams(w.Result), nil); err != nil {
		t.Fatalf("unwrap with role: %v", err)
	}
	if _, err := app.GetKey(ctx, "k", "", nil); err != nil {
		t.Fatalf("get with role: %v", err)
	}
	d := sha256.Sum256(nil)
	_, err = app.Sign(ctx, "k", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmRS256), Value: d[:]}, nil)
	wantKVError(t, "sign with encryption-user role", err, 403, "Forbidden", "ForbiddenByRbac")
}

// TestKeyVaultWire checks what the SDK does not show: the challenge, paging
// with maxresults, api-versions, routing corners and error shapes.
func TestKeyVaultWire(t *testing.T) {
	ts := servertest.New(t, nil)
	tok := adminToken(t, ts)
	MustGroup(t, ts, tok, "rg")
	mustKeyVault(t, ts, "rg", "kv-wire", vaultSpec{retentionDays: 90, policies: map[string][]string{adminObjectID(t, ts): {"all"}}})
	vt := vaultToken(t, ts)
	const av = "?api-version=2025-07-01"

	// The anonymous first request, with a body that is not valid JSON: 401
	// and the challenge, never a 400.
	r := kvRaw(t, ts, "", "POST", "kv-wire", "/keys/k/create"+av, "{not json")
	wantStatus(t, r, 401)
	want := `Bearer authorization="` + ts.URL("login") + "/" + ts.Admin.TenantID + `", resource="` + ts.URL("vault") + `"`
	if got := r.Header.Get("WWW-Authenticate"); got != want {
		t.Fatalf("challenge = %q, want %q", got, want)
	}
	if !strings.Contains(string(r.Body), `"code":"Unauthorized"`) {
		t.Fatalf("401 body = %s", r.Body)
	}
	wantStatus(t, kvRaw(t, ts, "garbage", "GET", "kv-wire", "/keys"+av, ""), 401)

	for _, name := range []string{"restore", "versions", "k-3"} {
		r := kvRaw(t, ts, vt, "POST", "kv-wire", "/keys/"+name+"/create"+av, `{"kty":"EC"}`)
		wantStatus(t, r, 200)
	}
	// GET /keys/restore is the key named restore; POST /keys/restore restores.
	wantStatus(t, kvRaw(t, ts, vt, "GET", "kv-wire", "/keys/restore"+av, ""), 200)
	wantStatus(t, kvRaw(t, ts, vt, "POST", "kv-wire", "/keys/restore"+av, `{"value":"AAAA"}`), 400)
	// Paging: maxresults and an absolute nextLink carrying api-version.
	r = kvRaw(t, ts, vt, "GET", "kv-wire", "/keys?api-version=7.4&maxresults=2", "")
	wantStatus(t, r, 200)
	var page struct {
		Value []struct {
			Kid string `json:"kid"`
		} `json:"value"`
		NextLink string `json:"nextLink"`
	}
	if err := json.Unmarshal(r.Body, &page); err != nil || len(page.Value) != 2 || !strings.HasPrefix(page.NextLink, vaultURL(ts, "kv-wire")+"/keys?api-version=7.4") {
		t.Fatalf("page 1 = %s", r.Body)
	}
	req, _ := http.NewRequest("GET", page.NextLink, nil)
	req.Header.Set("Authorization", "Bearer "+vt)
	r = MustSend(t, ts, req)
	page.Value, page.NextLink = nil, ""
	if err := json.Unmarshal(r.Body, &page); err != nil || len(page.Value) != 1 || page.NextLink != "" {
		t.Fatalf("page 2 = %s", r.Body)
	}
	// Timestamps are integers; bytes are unpadded base64url.
	r = kvRaw(t, ts, vt, "GET", "kv-wire", "/keys/k-3/"+av, "")
	wantStatus(t, r, 200)
	if regexp.MustCompile(`"created":\d+\.`).Match(r.Body) || bytes.Contains(r.Body, []byte(`=",`)) || bytes.Contains(r.Body, []byte(`=\"`)) {
		t.Fatalf("key bundle with float time or padded base64: %s", r.Body)
	}
	// Errors.
	wantStatus(t, kvRaw(t, ts, vt, "GET", "kv-wire", "/keys"+"?api-version=1999-01-01", ""), 400)
	wantStatus(t, kvRaw(t, ts, vt, "GET", "kv-wire", "/keys", ""), 400)
	wantStatus(t, kvRaw(t, ts, vt, "GET", "kv-wire", "/keys/nope/"+av, ""), 404)
	wantStatus(t, kvRaw(t, ts, vt, "GET", "kv-missing", "/keys"+av, ""), 404)
	wantStatus(t, kvRaw(t, ts, vt, "GET", "kv-wire", "/secrets"+av, ""), 404)
	wantStatus(t, kvRaw(t, ts, vt, "POST", "kv-wire", "/keys/k-3/create"+av, `{"kty":"RSA","key_size":"big"}`), 400)
	wantStatus(t, kvRaw(t, ts, vt, "DELETE", "kv-wire", "/keys/k-3/versions"+av, ""), 405)
}

// TestKeyVaultBackground checks the sweep: soft-deleted keys past their
// purge date are purged, and keys whose rotation policy is due rotate.
func TestKeyVaultBackground(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	tok := adminToken(t, ts)
	MustGroup(t, ts, tok, "rg")
	mustKeyVault(t, ts, "rg", "kv-bg", vaultSpec{retentionDays: 7, purgeProtection: true, policies: map[string][]string{adminObjectID(t, ts): {"all"}}})
	c := keysClient(t, ts, "kv-bg", adminCredential(t, ts))
	for _, name := range []string{"gone", "rotating"} {
		if _, err := c.CreateKey(ctx, name, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeEC)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.UpdateKeyRotationPolicy(ctx, "rotating", azkeys.KeyRotationPolicy{LifetimeActions: []*azkeys.LifetimeAction{{
		Trigger: &azkeys.LifetimeActionTrigger{TimeAfterCreate: to.Ptr("P10D")},
		Action:  &azkeys.LifetimeActionType{Type: to.Ptr(azkeys.KeyRotationPolicyActionRotate)},
	}}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteKey(ctx, "gone", nil); err != nil {
		t.Fatal(err)
	}
	if err := ts.KeyVault.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetDeletedKey(ctx, "gone", nil); err != nil {
		t.Fatalf("deleted key purged before its date: %v", err)
	}
	ts.KeyVault.Now = func() time.Time { return time.Now().Add(11 * 24 * time.Hour) }
	defer func() { ts.KeyVault.Now = nil }()
	if err := ts.KeyVault.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := c.GetDeletedKey(ctx, "gone", nil)
	wantKVError(t, "get deleted key after its purge date", err, 404, "KeyNotFound", "")
	n := 0
	for pager := c.NewListKeyPropertiesVersionsPager("rotating", nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.Value)
	}
	if n != 2 {
		t.Fatalf("rotating key has %d versions after a due sweep, want 2", n)
	}
	// Not due again until ten days after the new version.
	if err := ts.KeyVault.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	recs, err := ts.KeyVault.ListAudit(ctx, keyvault.AuditFilter{VaultName: "kv-bg", KeyName: "rotating"})
	if err != nil {
		t.Fatal(err)
	}
	rotations := 0
	for _, r := range recs {
		if r.Operation == "KeyRotateByPolicy" && r.Outcome == "success" && r.CallerOID == "system" {
			rotations++
		}
	}
	if rotations != 1 {
		t.Fatalf("audit log holds %d rotations by policy, want 1", rotations)
	}
}

// FuzzKeyVaultBody sends arbitrary bodies to every operation that takes one:
// the answer is never a 5xx.
func FuzzKeyVaultBody(f *testing.F) {
	for _, seed := range []string{
		`{"kty":"RSA","key_size":2048}`, `{"kty":"EC","crv":"P-384"}`, `{"kty":"RSA","key_size":-1}`, `{"kty":"oct"}`,
		`{"alg":"RSA-OAEP-256","value":"AQID"}`, `{"alg":"RS256","value":"` + strings.Repeat("A", 43) + `"}`, `{"alg":"RS256","digest":"AA","value":"AA"}`,
		`{"key":{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQ","p":"AQ","q":"AQ"}}`, `{"key":{"kty":"EC","crv":"P-256","d":"AQ"}}`,
		`{"attributes":{"enabled":false,"nbf":5,"exp":4}}`, `{"key_ops":["wrapKey","bogus"]}`, `{"tags":{"":""}}`,
		`{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P1Y2M3DT4H"},"action":{"type":"Rotate"}}],"attributes":{"expiryTime":"P2Y"}}`,
		`{"lifetimeActions":[{"trigger":{},"action":{}}]}`, `{"value":"AAAA"}`, `null`, `[]`, `"x"`, `{"value":"====="}`, ``,
	} {
		f.Add(seed)
	}
	ts := servertest.New(f, nil)
	tok := adminToken(f, ts)
	MustGroup(f, ts, tok, "rg")
	mustKeyVaultTB(f, ts, "rg", "kv-fuzz", adminObjectID(f, ts))
	vt := vaultToken(f, ts)
	wantStatus(f, kvRaw(f, ts, vt, "POST", "kv-fuzz", "/keys/k/create?api-version=7.6", `{"kty":"RSA"}`), 200)
	targets := []struct{ method, path string }{
		{"POST", "/keys/k2/create"}, {"PUT", "/keys/k3"}, {"PATCH", "/keys/k/"}, {"POST", "/keys/k/wrapkey"}, {"POST", "/keys/k/unwrapkey"},
		{"POST", "/keys/k/encrypt"}, {"POST", "/keys/k/decrypt"}, {"POST", "/keys/k/sign"}, {"POST", "/keys/k/verify"},
		{"PUT", "/keys/k/rotationpolicy"}, {"POST", "/keys/restore"},
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, tg := range targets {
			r := kvRaw(t, ts, vt, tg.method, "kv-fuzz", tg.path+"?api-version=2025-07-01", body)
			if r.Status >= 500 {
				t.Fatalf("%s %s with %q: %d %s", tg.method, tg.path, body, r.Status, r.Body)
			}
		}
	})
}

// mustKeyVaultTB creates a vault through the ARM REST API (for fuzz and
// benchmark set-ups, which have no *testing.T).
func mustKeyVaultTB(tb testing.TB, ts *servertest.TestServer, rg, name, adminOID string, extra ...string) {
	tb.Helper()
	policies := `{"tenantId":"` + ts.Admin.TenantID + `","objectId":"` + adminOID + `","permissions":{"keys":["all"]}}`
	for _, oid := range extra {
		policies += `,{"tenantId":"` + ts.Admin.TenantID + `","objectId":"` + oid + `","permissions":{"keys":["get","wrapKey","unwrapKey"]}}`
	}
	body := `{"location":"westus2","properties":{"tenantId":"` + ts.Admin.TenantID + `","sku":{"family":"A","name":"standard"},"softDeleteRetentionInDays":90,"accessPolicies":[` + policies + `]}}`
	r := MustARM(tb, ts, adminToken(tb, ts), "PUT", groupPath(ts, rg)+"/providers/Microsoft.KeyVault/vaults/"+name+"?api-version=2024-11-01", body)
	if r.Status != 200 && r.Status != 201 {
		tb.Fatalf("create vault %s: %d %s", name, r.Status, r.Body)
	}
}

// TestKeyVaultNoExistenceOracle checks that a principal without permission
// learns nothing about which key names exist: every key operation answers
// it the same 403 for a live key, a soft-deleted key and a name never used,
// on access-policy and RBAC vaults alike.
func TestKeyVaultNoExistenceOracle(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	tok := adminToken(t, ts)
	MustGroup(t, ts, tok, "rg")
	adminOID := adminObjectID(t, ts)
	mustKeyVault(t, ts, "rg", "kv-policy", vaultSpec{retentionDays: 90, policies: map[string][]string{adminOID: {"all"}}})
	v := mustKeyVault(t, ts, "rg", "kv-rbac", vaultSpec{retentionDays: 90, rbac: true})
	MustAssign(t, ts, tok, *v.ID, rm.RoleKeyVaultAdministrator, adminOID)
	sp := MustServicePrincipal(t, ts, "outsider")
	outsider := MustToken(t, ts, sp.ClientID, sp.Secret, "https://vault."+ts.Endpoint.Domain+":"+portOf(ts)+"/.default")

	const api = "?api-version=" + "7.5"
	version := strings.Repeat("0", 32)
	wrap := `{"alg":"RSA-OAEP-256","value":"AAAA"}`
	for _, vault := range []string{"kv-policy", "kv-rbac"} {
		t.Run(vault, func(t *testing.T) {
			admin := keysClient(t, ts, vault, adminCredential(t, ts))
			for _, name := range []string{"live", "gone"} {
				if _, err := admin.CreateKey(ctx, name, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA)}, nil); err != nil {
					t.Fatalf("create %s: %v", name, err)
				}
			}
			if _, err := admin.DeleteKey(ctx, "gone", nil); err != nil {
				t.Fatalf("delete gone: %v", err)
			}
			for _, op := range []struct{ method, path, body string }{
				{"GET", "/keys/%s", ""},
				{"GET", "/keys/%s/" + version, ""},
				{"PATCH", "/keys/%s", `{"attributes":{"enabled":false}}`},
				{"PATCH", "/keys/%s/" + version, `{"attributes":{"enabled":false}}`},
				{"DELETE", "/keys/%s", ""},
				{"PUT", "/keys/%s", `{"key":{"kty":"RSA"}}`},
				{"POST", "/keys/%s/create", `{"kty":"RSA"}`},
				{"POST", "/keys/%s/backup", ""},
				{"POST", "/keys/%s/rotate", ""},
				{"GET", "/keys/%s/versions", ""},
				{"GET", "/keys/%s/rotationpolicy", ""},
				{"PUT", "/keys/%s/rotationpolicy", `{}`},
				{"POST", "/keys/%s/wrapkey", wrap},
				{"POST", "/keys/%s/" + version + "/unwrapkey", wrap},
				{"GET", "/deletedkeys/%s", ""},
				{"DELETE", "/deletedkeys/%s", ""},
				{"POST", "/deletedkeys/%s/recover", ""},
			} {
				type answer struct {
					Status      int
					Code, Inner string
				}
				answers := map[string]answer{}
				for _, name := range []string{"live", "gone", "missing"} {
					r := kvRaw(t, ts, outsider, op.method, vault, fmt.Sprintf(op.path, name)+api, op.body)
					var e struct {
						Error struct {
							Code       string `json:"code"`
							InnerError struct {
								Code string `json:"code"`
							} `json:"innererror"`
						} `json:"error"`
					}
					_ = json.Unmarshal(r.Body, &e)
					answers[name] = answer{r.Status, e.Error.Code, e.Error.InnerError.Code}
				}
				want := answers["missing"]
				if want.Status != http.StatusForbidden {
					t.Errorf("%s %s: outsider got %+v for a missing key, want 403", op.method, op.path, want)
				}
				for _, name := range []string{"live", "gone"} {
					if answers[name] != want {
						t.Errorf("%s %s: outsider got %+v for the %s key but %+v for a missing one", op.method, op.path, answers[name], name, want)
					}
				}
			}
			// Nothing the outsider sent changed the keys.
			if _, err := admin.GetKey(ctx, "live", "", nil); err != nil {
				t.Errorf("live key after the outsider's calls: %v", err)
			}
			if _, err := admin.GetDeletedKey(ctx, "gone", nil); err != nil {
				t.Errorf("deleted key after the outsider's calls: %v", err)
			}
		})
	}
}
