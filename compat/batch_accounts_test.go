package compat_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/batch/armbatch/v3"

	"custody/rm"
	"custody/server/servertest"
)

const batchAPIVersion = "2024-07-01"

// fastPoll polls LROs quickly; the server's Retry-After-Ms decides anyway.
var fastPoll = &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond}

func batchClient(t *testing.T, ts *servertest.TestServer) *armbatch.AccountClient {
	t.Helper()
	c, err := armbatch.NewAccountClient(ts.Admin.SubscriptionID, adminCredential(t, ts), armOptions(ts))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func batchAccountPath(ts *servertest.TestServer, rg, name string) string {
	return groupPath(ts, rg) + "/providers/Microsoft.Batch/batchAccounts/" + name
}

// mustCreateAccount creates an account with the SDK and waits for it.
func mustCreateAccount(t *testing.T, c *armbatch.AccountClient, rg, name string, p armbatch.AccountCreateParameters) armbatch.Account {
	t.Helper()
	ctx := context.Background()
	if p.Location == nil {
		p.Location = to.Ptr("westus2")
	}
	poller, err := c.BeginCreate(ctx, rg, name, p, nil)
	if err != nil {
		t.Fatalf("begin create %s: %v", name, err)
	}
	res, err := poller.PollUntilDone(ctx, fastPoll)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return res.Account
}

// wantResponseError checks that err is an *azcore.ResponseError with the
// status and code, and returns its text.
func wantResponseError(t *testing.T, err error, status int, code string) string {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("error = %v, want an HTTP %d %s", err, status, code)
	}
	if re.StatusCode != status || (code != "" && re.ErrorCode != code) {
		t.Fatalf("error = %d %s, want %d %s: %v", re.StatusCode, re.ErrorCode, status, code, err)
	}
	return re.Error()
}

func TestBatchAccountLifecycle(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	createGroup(t, ts, "rg1")
	createGroup(t, ts, "rg2")
	c := batchClient(t, ts)

	start := time.Now()
	created := mustCreateAccount(t, c, "rg1", "acct1", armbatch.AccountCreateParameters{
		Location: to.Ptr("westus2"),
		Tags:     map[string]*string{"env": to.Ptr("test")},
		Identity: &armbatch.AccountIdentity{Type: to.Ptr(armbatch.ResourceIdentityTypeSystemAssigned)},
	})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("create took %s; the LRO should finish on the first poll", d)
	}
	if created.Name == nil || *created.Name != "acct1" || created.Properties == nil {
		t.Fatalf("create result lacks the account: %+v", created)
	}
	p := created.Properties
	if p.ProvisioningState == nil || *p.ProvisioningState != armbatch.ProvisioningStateSucceeded {
		t.Errorf("provisioningState = %v, want Succeeded", p.ProvisioningState)
	}
	wantEndpoint := "acct1.batch." + ts.Endpoint.Domain + ":" + strconv.Itoa(ts.Endpoint.Port)
	if p.AccountEndpoint == nil || *p.AccountEndpoint != wantEndpoint {
		t.Errorf("accountEndpoint = %v, want %s", p.AccountEndpoint, wantEndpoint)
	}
	if p.Encryption == nil || p.Encryption.KeySource == nil || *p.Encryption.KeySource != armbatch.KeySourceMicrosoftBatch {
		t.Errorf("encryption = %+v, want keySource Microsoft.Batch", p.Encryption)
	}
	if p.PoolAllocationMode == nil || *p.PoolAllocationMode != armbatch.PoolAllocationModeBatchService {
		t.Errorf("poolAllocationMode = %v", p.PoolAllocationMode)
	}
	if p.DedicatedCoreQuota == nil || p.PoolQuota == nil {
		t.Errorf("quotas missing: %+v", p)
	}
	id := created.Identity
	if id == nil || id.Type == nil || *id.Type != armbatch.ResourceIdentityTypeSystemAssigned || id.PrincipalID == nil || *id.PrincipalID == "" {
		t.Fatalf("identity = %+v, want SystemAssigned with a principalId", id)
	}
	if id.TenantID == nil || *id.TenantID != ts.Admin.TenantID {
		t.Errorf("identity tenantId = %v, want %s", id.TenantID, ts.Admin.TenantID)
	}
	// The principal exists in the directory.
	if _, err := ts.Identity.Store.Principal(ctx, *id.PrincipalID); err != nil {
		t.Errorf("system-assigned principal %s not in the directory: %v", *id.PrincipalID, err)
	}

	got, err := c.Get(ctx, "rg1", "acct1", nil)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if *got.Identity.PrincipalID != *id.PrincipalID || *got.Tags["env"] != "test" || *got.Location != "westus2" {
		t.Errorf("get = %+v, identity %+v", got.Account, got.Identity)
	}
	// ARM names are case-insensitive.
	if _, err := c.Get(ctx, "RG1", "ACCT1", nil); err != nil {
		t.Errorf("get with other casing: %v", err)
	}

	// Tags by PATCH.
	up, err := c.Update(ctx, "rg1", "acct1", armbatch.AccountUpdateParameters{Tags: map[string]*string{"env": to.Ptr("prod"), "team": to.Ptr("a")}}, nil)
	if err != nil {
		t.Fatalf("update tags: %v", err)
	}
	if len(up.Tags) != 2 || *up.Tags["env"] != "prod" {
		t.Errorf("tags after update = %v", up.Tags)
	}
	if *up.Identity.PrincipalID != *id.PrincipalID {
		t.Errorf("a tag update changed the identity")
	}

	mustCreateAccount(t, c, "rg1", "acct2", armbatch.AccountCreateParameters{})
	mustCreateAccount(t, c, "rg2", "acct3", armbatch.AccountCreateParameters{Location: to.Ptr("East US")})
	got3, err := c.Get(ctx, "rg2", "acct3", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *got3.Location != "eastus" || *got3.Identity.Type != armbatch.ResourceIdentityTypeNone {
		t.Errorf("acct3 location %s identity %s, want eastus None", *got3.Location, *got3.Identity.Type)
	}
	// acct3 is not in rg1.
	_, err = c.Get(ctx, "rg1", "acct3", nil)
	wantResponseError(t, err, 404, "ResourceNotFound")

	names := func(pager interface {
		More() bool
	}, next func() ([]*armbatch.Account, error)) []string {
		var out []string
		for pager.More() {
			page, err := next()
			if err != nil {
				t.Fatalf("list: %v", err)
			}
			for _, a := range page {
				out = append(out, *a.Name)
			}
		}
		sort.Strings(out)
		return strings.Split(strings.Join(out, ","), ",")
	}
	rgPager := c.NewListByResourceGroupPager("rg1", nil)
	if got := names(rgPager, func() ([]*armbatch.Account, error) {
		p, err := rgPager.NextPage(ctx)
		return p.Value, err
	}); strings.Join(got, ",") != "acct1,acct2" {
		t.Errorf("list rg1 = %v, want acct1,acct2", got)
	}
	subPager := c.NewListPager(nil)
	if got := names(subPager, func() ([]*armbatch.Account, error) {
		p, err := subPager.NextPage(ctx)
		return p.Value, err
	}); strings.Join(got, ",") != "acct1,acct2,acct3" {
		t.Errorf("list subscription = %v, want acct1,acct2,acct3", got)
	}

	// Delete: LRO to the end, the identity goes with the account, then 404.
	dp, err := c.BeginDelete(ctx, "rg1", "acct1", nil)
	if err != nil {
		t.Fatalf("begin delete: %v", err)
	}
	if _, err := dp.PollUntilDone(ctx, fastPoll); err != nil {
		t.Fatalf("delete: %v", err)
	}
	_, err = c.Get(ctx, "rg1", "acct1", nil)
	wantResponseError(t, err, 404, "ResourceNotFound")
	if _, err := ts.Identity.Store.Principal(ctx, *id.PrincipalID); err == nil {
		t.Errorf("the system-assigned identity outlived its account")
	}
	// Deleting again is success.
	dp, err = c.BeginDelete(ctx, "rg1", "acct1", nil)
	if err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := dp.PollUntilDone(ctx, fastPoll); err != nil {
		t.Fatalf("second delete poll: %v", err)
	}
	// The name is free again.
	mustCreateAccount(t, c, "rg2", "acct1", armbatch.AccountCreateParameters{})
}

func TestBatchAccountUserAssignedIdentity(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	tok := adminToken(t, ts)
	MustGroup(t, ts, tok, "rg1")
	principal := MustIdentity(t, ts, tok, "rg1", "uami1")
	rid := identityPath(ts, "rg1", "uami1")
	c := batchClient(t, ts)
	a := mustCreateAccount(t, c, "rg1", "acctua", armbatch.AccountCreateParameters{
		Identity: &armbatch.AccountIdentity{
			Type:                   to.Ptr(armbatch.ResourceIdentityTypeUserAssigned),
			UserAssignedIdentities: map[string]*armbatch.UserAssignedIdentities{rid: {}},
		},
	})
	if *a.Identity.Type != armbatch.ResourceIdentityTypeUserAssigned {
		t.Fatalf("identity type = %s", *a.Identity.Type)
	}
	u := a.Identity.UserAssignedIdentities[rid]
	if u == nil || u.PrincipalID == nil || *u.PrincipalID != principal || u.ClientID == nil || *u.ClientID == "" {
		t.Fatalf("userAssignedIdentities = %+v, want %s with principal %s", a.Identity.UserAssignedIdentities, rid, principal)
	}
	if a.Identity.PrincipalID != nil {
		t.Errorf("a user-assigned account has a system principalId %s", *a.Identity.PrincipalID)
	}

	// A missing identity is refused.
	_, err := c.BeginCreate(ctx, "rg1", "acctub", armbatch.AccountCreateParameters{
		Location: to.Ptr("westus2"),
		Identity: &armbatch.AccountIdentity{
			Type:                   to.Ptr(armbatch.ResourceIdentityTypeUserAssigned),
			UserAssignedIdentities: map[string]*armbatch.UserAssignedIdentities{identityPath(ts, "rg1", "nosuch"): {}},
		},
	}, nil)
	if msg := wantResponseError(t, err, 400, "InvalidIdentity"); !strings.Contains(msg, "nosuch") {
		t.Errorf("message does not name the identity: %s", msg)
	}

	// Switch to system-assigned by PATCH, then to None.
	up, err := c.Update(ctx, "rg1", "acctua", armbatch.AccountUpdateParameters{Identity: &armbatch.AccountIdentity{Type: to.Ptr(armbatch.ResourceIdentityTypeSystemAssigned)}}, nil)
	if err != nil {
		t.Fatalf("update identity: %v", err)
	}
	if *up.Identity.Type != armbatch.ResourceIdentityTypeSystemAssigned || up.Identity.PrincipalID == nil || len(up.Identity.UserAssignedIdentities) != 0 {
		t.Errorf("after switch: %+v", up.Identity)
	}
	up, err = c.Update(ctx, "rg1", "acctua", armbatch.AccountUpdateParameters{Identity: &armbatch.AccountIdentity{Type: to.Ptr(armbatch.ResourceIdentityTypeNone)}}, nil)
	if err != nil {
		t.Fatalf("update identity to None: %v", err)
	}
	if *up.Identity.Type != armbatch.ResourceIdentityTypeNone || up.Identity.PrincipalID != nil {
		t.Errorf("after None: %+v", up.Identity)
	}
}

func TestBatchAccountCreateRefusals(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	createGroup(t, ts, "rg1")
	c := batchClient(t, ts)

	// A customer key at creation with a system-assigned identity cannot
	// work: the identity does not exist yet.
	_, err := c.BeginCreate(ctx, "rg1", "cmkacct", armbatch.AccountCreateParameters{
		Location: to.Ptr("westus2"),
		Identity: &armbatch.AccountIdentity{Type: to.Ptr(armbatch.ResourceIdentityTypeSystemAssigned)},
		Properties: &armbatch.AccountCreateProperties{Encryption: &armbatch.EncryptionProperties{
			KeySource:          to.Ptr(armbatch.KeySourceMicrosoftKeyVault),
			KeyVaultProperties: &armbatch.KeyVaultProperties{KeyIdentifier: to.Ptr("https://kv1.vault.localhost/keys/k1")},
		}},
	}, nil)
	msg := wantResponseError(t, err, 400, "SystemAssignedIdentityNotYetAuthorized")
	for _, want := range []string{"cmkacct", "principalId", "user-assigned"} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal does not mention %q: %s", want, msg)
		}
	}
	_, err = c.Get(ctx, "rg1", "cmkacct", nil)
	wantResponseError(t, err, 404, "ResourceNotFound")

	// Missing resource group.
	_, err = c.BeginCreate(ctx, "nosuchgroup", "acct1", armbatch.AccountCreateParameters{Location: to.Ptr("westus2")}, nil)
	wantResponseError(t, err, 404, "ResourceGroupNotFound")
	_, err = c.Get(ctx, "nosuchgroup", "acct1", nil)
	wantResponseError(t, err, 404, "ResourceGroupNotFound")

	// Bad names.
	for _, name := range []string{"ab", "UPPER", "has-dash", "waytoolongaccountname12345", "under_score"} {
		_, err = c.BeginCreate(ctx, "rg1", name, armbatch.AccountCreateParameters{Location: to.Ptr("westus2")}, nil)
		wantResponseError(t, err, 400, "AccountNameInvalid")
	}

	// Bad settings.
	cases := []struct {
		name string
		p    armbatch.AccountCreateParameters
		code string
	}{
		{"nolocation", armbatch.AccountCreateParameters{}, "LocationRequired"},
		{"badidentity", armbatch.AccountCreateParameters{Location: to.Ptr("westus2"), Identity: &armbatch.AccountIdentity{Type: to.Ptr(armbatch.ResourceIdentityType("SystemAssigned, UserAssigned"))}}, "InvalidIdentityType"},
		{"badkeysource", armbatch.AccountCreateParameters{Location: to.Ptr("westus2"), Properties: &armbatch.AccountCreateProperties{Encryption: &armbatch.EncryptionProperties{KeySource: to.Ptr(armbatch.KeySource("Microsoft.Other"))}}}, "InvalidKeySource"},
		{"kvnoidentity", armbatch.AccountCreateParameters{Location: to.Ptr("westus2"), Properties: &armbatch.AccountCreateProperties{Encryption: &armbatch.EncryptionProperties{KeySource: to.Ptr(armbatch.KeySourceMicrosoftKeyVault), KeyVaultProperties: &armbatch.KeyVaultProperties{KeyIdentifier: to.Ptr("https://kv1.vault.localhost/keys/k1")}}}}, "AccountIdentityRequired"},
		{"kvnokey", armbatch.AccountCreateParameters{Location: to.Ptr("westus2"), Identity: &armbatch.AccountIdentity{Type: to.Ptr(armbatch.ResourceIdentityTypeNone)}, Properties: &armbatch.AccountCreateProperties{Encryption: &armbatch.EncryptionProperties{KeySource: to.Ptr(armbatch.KeySourceMicrosoftKeyVault)}}}, "KeyIdentifierRequired"},
		{"batchwithkey", armbatch.AccountCreateParameters{Location: to.Ptr("westus2"), Properties: &armbatch.AccountCreateProperties{Encryption: &armbatch.EncryptionProperties{KeySource: to.Ptr(armbatch.KeySourceMicrosoftBatch), KeyVaultProperties: &armbatch.KeyVaultProperties{KeyIdentifier: to.Ptr("https://kv1.vault.localhost/keys/k1")}}}}, "InvalidEncryptionSettings"},
		{"usersub", armbatch.AccountCreateParameters{Location: to.Ptr("westus2"), Properties: &armbatch.AccountCreateProperties{PoolAllocationMode: to.Ptr(armbatch.PoolAllocationModeUserSubscription)}}, "PoolAllocationModeNotSupported"},
	}
	for _, tc := range cases {
		_, err := c.BeginCreate(ctx, "rg1", tc.name, tc.p, nil)
		if err == nil {
			t.Errorf("%s: create succeeded", tc.name)
			continue
		}
		var re *azcore.ResponseError
		if !errors.As(err, &re) || re.StatusCode != 400 || re.ErrorCode != tc.code {
			t.Errorf("%s: %v, want 400 %s", tc.name, err, tc.code)
		}
	}

	// The name is global: another group cannot take it.
	mustCreateAccount(t, c, "rg1", "taken", armbatch.AccountCreateParameters{})
	createGroup(t, ts, "rg2")
	_, err = c.BeginCreate(ctx, "rg2", "taken", armbatch.AccountCreateParameters{Location: to.Ptr("westus2")}, nil)
	wantResponseError(t, err, 409, "AccountNameUnavailable")

	// PUT on an existing account updates it (tags replaced) and cannot
	// move it.
	a := mustCreateAccount(t, c, "rg1", "taken", armbatch.AccountCreateParameters{Tags: map[string]*string{"k": to.Ptr("v")}})
	if len(a.Tags) != 1 || *a.Tags["k"] != "v" {
		t.Errorf("PUT on existing account: tags = %v", a.Tags)
	}
	_, err = c.BeginCreate(ctx, "rg1", "taken", armbatch.AccountCreateParameters{Location: to.Ptr("eastus")}, nil)
	wantResponseError(t, err, 400, "InvalidResourceLocation")
}

// TestBatchAccountRawProtocol checks the wire: 202 + Location + Retry-After
// on create and delete, the final Location answers, encryptionStatus, bad
// bodies and methods, never a 500.
func TestBatchAccountRawProtocol(t *testing.T) {
	ts := servertest.New(t, nil)
	tok := adminToken(t, ts)
	MustGroup(t, ts, tok, "rg1")
	path := batchAccountPath(ts, "rg1", "rawacct") + "?api-version=" + batchAPIVersion

	r := MustARM(t, ts, tok, "PUT", path, `{"location":"West US 2","identity":{"type":"SystemAssigned"}}`)
	wantStatus(t, r, 202)
	loc := r.Header.Get("Location")
	if !strings.HasPrefix(loc, "https://") || !strings.Contains(loc, "/providers/Microsoft.Batch/locations/westus2/operationResults/") || !strings.Contains(loc, "api-version=") {
		t.Fatalf("Location = %q", loc)
	}
	if r.Header.Get("Retry-After") == "" {
		t.Errorf("no Retry-After")
	}
	if r.Header.Get("Azure-AsyncOperation") != "" {
		t.Errorf("Azure Batch answers with Location only; got Azure-AsyncOperation")
	}
	u := strings.TrimPrefix(loc, ts.URL("management"))
	fin := MustARM(t, ts, tok, "GET", u, "")
	wantStatus(t, fin, 200)
	var acct struct {
		ID         string `json:"id"`
		Properties struct {
			ProvisioningState string `json:"provisioningState"`
			EncryptionStatus  struct {
				State, Reason, Since, KeyVersionInUse string
			} `json:"encryptionStatus"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(fin.Body, &acct); err != nil {
		t.Fatal(err)
	}
	if acct.Properties.ProvisioningState != "Succeeded" || acct.Properties.EncryptionStatus.State != "Available" ||
		!strings.HasPrefix(acct.Properties.EncryptionStatus.KeyVersionInUse, "platform-") || acct.Properties.EncryptionStatus.Since == "" {
		t.Errorf("final body: %s", fin.Body)
	}
	if _, err := time.Parse(time.RFC3339, acct.Properties.EncryptionStatus.Since); err != nil {
		t.Errorf("encryptionStatus.since is not RFC 3339: %v", err)
	}

	// An unknown operation, and a stranger reading a real one.
	wantARMError(t, MustARM(t, ts, tok, "GET", subPath(ts)+"/providers/Microsoft.Batch/locations/westus2/operationResults/nosuch?api-version="+batchAPIVersion, ""), 404, "OperationNotFound")
	sp := MustServicePrincipal(t, ts, "stranger")
	stok := MustToken(t, ts, sp.ClientID, sp.Secret, armScope)
	wantARMError(t, MustARM(t, ts, stok, "GET", u, ""), 403, "AuthorizationFailed")
	wantARMError(t, MustARM(t, ts, stok, "GET", path, ""), 403, "AuthorizationFailed")
	lr := MustARM(t, ts, stok, "GET", groupPath(ts, "rg1")+"/providers/Microsoft.Batch/batchAccounts?api-version="+batchAPIVersion, "")
	wantStatus(t, lr, 200)
	if strings.Contains(string(lr.Body), "rawacct") {
		t.Errorf("a stranger's list shows the account: %s", lr.Body)
	}

	// Bad input is a 400 in Azure's shape, never a 500.
	for _, body := range []string{`{`, `[]`, `{"location":5}`, `{"location":"westus2","identity":{"type":7}}`, `{"location":"westus2","properties":{"encryption":"x"}}`, `{"location":"westus2","tags":{"a":1}}`} {
		wantARMError(t, MustARM(t, ts, tok, "PUT", batchAccountPath(ts, "rg1", "badbody")+"?api-version="+batchAPIVersion, body), 400, "InvalidRequestContent")
	}
	wantARMError(t, MustARM(t, ts, tok, "PUT", batchAccountPath(ts, "rg1", "badbody")+"?api-version="+batchAPIVersion, ""), 400, "InvalidRequestContent")
	wantARMError(t, MustARM(t, ts, tok, "PATCH", path, `{"properties":{"encryption":{"keySource":"Nope"}}}`), 400, "InvalidKeySource")
	wantARMError(t, MustARM(t, ts, tok, "PATCH", path, `{"properties":{"encryption":{"keySource":"Microsoft.KeyVault","keyVaultProperties":{"keyIdentifier":"http://kv.vault.localhost/keys/k"}}}}`), 400, "InvalidKeyIdentifier")
	wantARMError(t, MustARM(t, ts, tok, "PATCH", path, `{"properties":{"poolAllocationMode":"UserSubscription"}}`), 400, "PropertyChangeNotAllowed")
	wantARMError(t, MustARM(t, ts, tok, "POST", path, `{}`), 405, "MethodNotAllowed")
	wantARMError(t, MustARM(t, ts, tok, "GET", batchAccountPath(ts, "rg1", "rawacct")+"?api-version=1999-01-01", ""), 400, "InvalidApiVersionParameter")

	// Delete: 202 + Location, the final poll is 204 (not 404).
	d := MustARM(t, ts, tok, "DELETE", path, "")
	wantStatus(t, d, 202)
	dl := d.Header.Get("Location")
	if dl == "" {
		t.Fatal("delete answered 202 without Location")
	}
	wantStatus(t, MustARM(t, ts, tok, "GET", strings.TrimPrefix(dl, ts.URL("management")), ""), 204)
	wantStatus(t, MustARM(t, ts, tok, "DELETE", path, ""), 204)
	wantStatus(t, MustARM(t, ts, tok, "GET", path, ""), http.StatusNotFound)

	// A missing group is ResourceGroupNotFound for every operation.
	missing := batchAccountPath(ts, "nosuchgroup", "rawacct") + "?api-version=" + batchAPIVersion
	wantARMError(t, MustARM(t, ts, tok, "DELETE", missing, ""), 404, "ResourceGroupNotFound")
	wantARMError(t, MustARM(t, ts, tok, "PATCH", missing, `{"tags":{}}`), 404, "ResourceGroupNotFound")
	wantARMError(t, MustARM(t, ts, tok, "GET", groupPath(ts, "nosuchgroup")+"/providers/Microsoft.Batch/batchAccounts?api-version="+batchAPIVersion, ""), 404, "ResourceGroupNotFound")
}

// TestBatchAccountOddBodies sends unusual but well-formed bodies to create
// and update: each is answered with success or a 4xx in Azure's shape.
func TestBatchAccountOddBodies(t *testing.T) {
	ts := servertest.New(t, nil)
	tok := adminToken(t, ts)
	MustGroup(t, ts, tok, "rg1")
	base := batchAccountPath(ts, "rg1", "odd") + "?api-version=" + batchAPIVersion
	wantStatus(t, MustARM(t, ts, tok, "PUT", base, `{"location":"westus2"}`), 202)
	bodies := []string{
		`{}`, `null`, `{"identity":null}`, `{"properties":null}`, `{"properties":{"encryption":null}}`,
		`{"properties":{"encryption":{}}}`, `{"properties":{"encryption":{"keySource":""}}}`,
		`{"properties":{"encryption":{"keyVaultProperties":{"keyIdentifier":""}}}}`,
		`{"properties":{"encryption":{"keySource":"microsoft.keyvault","keyVaultProperties":{"keyIdentifier":"https://x.vault.localhost/keys/k"}}}}`,
		`{"identity":{}}`, `{"identity":{"type":""}}`, `{"identity":{"type":"systemassigned"}}`,
		`{"identity":{"userAssignedIdentities":{"bad":{}}}}`,
		`{"identity":{"type":"UserAssigned","userAssignedIdentities":{"/subscriptions/x/resourceGroups/y/providers/Microsoft.ManagedIdentity/userAssignedIdentities/z":null}}}`,
		`{"identity":{"type":"UserAssigned"}}`, `{"identity":{"type":"None","userAssignedIdentities":{}}}`,
		`{"location":"","tags":null}`, `{"location":"   "}`, `{"location":"westus2","properties":{"publicNetworkAccess":"Weird"}}`,
		`{"location":"westus2","properties":{"autoStorage":{"storageAccountId":"x"}}}`,
		`{"location":"westus2","properties":{"allowedAuthenticationModes":["AAD"]}}`,
		`{"tags":{"":""}}`, `{"tags":{"k":"` + strings.Repeat("v", 5000) + `"}}`,
	}
	for _, method := range []string{"PATCH", "PUT"} {
		for _, b := range bodies {
			r := MustARM(t, ts, tok, method, base, b)
			if r.Status >= 500 {
				t.Errorf("%s %s: %d %s", method, b, r.Status, r.Body)
			}
			if r.Status >= 400 {
				wantARMError(t, r, r.Status, "")
			}
		}
	}
	// The account is still readable and usable.
	wantStatus(t, MustARM(t, ts, tok, "GET", base, ""), 200)
	if _, _, err := ts.Batch.DEK(context.Background(), "odd"); err != nil {
		t.Errorf("data key after odd bodies: %v", err)
	}
}

// TestAssignIdentityNeedsPermission: attaching a user-assigned identity to a
// batch account (ARM create, update, PATCH) or a pool (data plane create and
// update) needs Microsoft.ManagedIdentity/userAssignedIdentities/assign/action
// on that identity. A Contributor of one resource group cannot attach an
// identity of another group, whether or not it exists, and learns nothing
// about it; Managed Identity Operator on the identity lets it.
func TestAssignIdentityNeedsPermission(t *testing.T) {
	ts := servertest.New(t, nil)
	admin := adminToken(t, ts)
	MustGroup(t, ts, admin, "rgB")
	MustGroup(t, ts, admin, "rgC")
	principalB := MustIdentity(t, ts, admin, "rgB", "idB")
	idB, missingB := identityPath(ts, "rgB", "idB"), identityPath(ts, "rgB", "nosuch")
	attacker := MustServicePrincipal(t, ts, "contributor-rgC")
	MustAssign(t, ts, admin, groupPath(ts, "rgC"), rm.RoleContributor, attacker.ObjectID)
	atok := MustToken(t, ts, attacker.ClientID, attacker.Secret, armScope)
	principalC := MustIdentity(t, ts, atok, "rgC", "idC")
	idC := identityPath(ts, "rgC", "idC")
	v := "?api-version=2024-07-01"
	acct := batchAccountPath(ts, "rgC", "acctc")
	withIdentity := func(rid string) string {
		return `{"location":"westus2","identity":{"type":"UserAssigned","userAssignedIdentities":{"` + rid + `":{}}}}`
	}
	wantStatus(t, MustARM(t, ts, atok, "PUT", acct+v, `{"location":"westus2"}`), http.StatusAccepted)

	for _, tt := range []struct{ name, method, path, body string }{
		{"CreateForeign", "PUT", batchAccountPath(ts, "rgC", "acctnew") + v, withIdentity(idB)},
		{"CreateMissing", "PUT", batchAccountPath(ts, "rgC", "acctnew") + v, withIdentity(missingB)},
		{"PutExistingForeign", "PUT", acct + v, withIdentity(idB)},
		{"PatchForeign", "PATCH", acct + v, withIdentity(idB)},
		{"PatchMissing", "PATCH", acct + v, withIdentity(missingB)},
		{"PatchBothOneForeign", "PATCH", acct + v, `{"identity":{"type":"UserAssigned","userAssignedIdentities":{"` + idC + `":{},"` + idB + `":{}}}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := MustARM(t, ts, atok, tt.method, tt.path, tt.body)
			wantARMError(t, r, http.StatusForbidden, "LinkedAuthorizationFailed")
			if !strings.Contains(string(r.Body), rm.ActionAssignIdentity) || strings.Contains(string(r.Body), principalB) {
				t.Errorf("refusal should name the permission and nothing of the identity: %s", r.Body)
			}
		})
	}
	wantARMError(t, MustARM(t, ts, admin, "GET", batchAccountPath(ts, "rgC", "acctnew")+v, ""), http.StatusNotFound, "")
	if r := MustARM(t, ts, admin, "GET", acct+v, ""); strings.Contains(string(r.Body), "idB") || strings.Contains(string(r.Body), principalB) {
		t.Fatalf("account holds the foreign identity after refused writes: %s", r.Body)
	}

	// The data plane: pools of the attacker's account.
	btok := batchToken(t, ts, attacker.ClientID, attacker.Secret)
	pool := func(id, rid string) string {
		return `{"id":"` + id + `","vmSize":"standard_a1_v2","targetDedicatedNodes":0,"identity":{"type":"UserAssigned","userAssignedIdentities":[{"resourceId":"` + rid + `"}]}}`
	}
	for _, rid := range []string{idB, missingB, strings.Replace(idC, "/rgC/", "/rgC/../rgB/", 1)} {
		r := batchRaw(t, ts, btok, "POST", "acctc", "/pools?api-version="+dataAPIVersion, pool("pb", rid))
		if r.Status == http.StatusCreated || r.Status >= 500 || strings.Contains(string(r.Body), principalB) {
			t.Errorf("pool create with %s: %d %s", rid, r.Status, r.Body)
		}
	}
	wantBatchError(t, batchRaw(t, ts, btok, "POST", "acctc", "/pools?api-version="+dataAPIVersion, pool("pb", idB)), http.StatusForbidden, "LinkedAuthorizationFailed")
	if r := batchRaw(t, ts, btok, "POST", "acctc", "/pools?api-version="+dataAPIVersion, pool("pc", idC)); r.Status != http.StatusCreated {
		t.Fatalf("pool with the attacker's own identity: %d %s", r.Status, r.Body)
	}
	patch := `{"identity":{"type":"UserAssigned","userAssignedIdentities":[{"resourceId":"` + idB + `"}]}}`
	wantBatchError(t, batchRaw(t, ts, btok, "PATCH", "acctc", "/pools/pc?api-version="+dataAPIVersion, patch), http.StatusForbidden, "LinkedAuthorizationFailed")
	wantBatchError(t, batchRaw(t, ts, btok, "POST", "acctc", "/pools/pc/updateproperties?api-version="+dataAPIVersion,
		`{"certificateReferences":[],"applicationPackageReferences":[],"metadata":[],"identity":{"type":"UserAssigned","userAssignedIdentities":[{"resourceId":"`+idB+`"}]}}`), http.StatusForbidden, "LinkedAuthorizationFailed")
	if r := batchRaw(t, ts, btok, "GET", "acctc", "/pools/pc?api-version="+dataAPIVersion, ""); r.Status != http.StatusOK || strings.Contains(string(r.Body), "idB") || !strings.Contains(string(r.Body), principalC) {
		t.Fatalf("pool after refused updates: %d %s", r.Status, r.Body)
	}

	// The attacker's own identity may be attached to the account.
	r := MustARM(t, ts, atok, "PATCH", acct+v, withIdentity(idC))
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.Body), principalC) {
		t.Errorf("PATCH with an identity the caller may assign does not show it: %s", r.Body)
	}

	// Managed Identity Operator on idB is enough to attach it.
	MustAssign(t, ts, admin, idB, rm.RoleManagedIdentityOperator, attacker.ObjectID)
	r = MustARM(t, ts, atok, "PATCH", acct+v, withIdentity(idB))
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.Body), principalB) {
		t.Errorf("PATCH by an operator of the identity does not show it: %s", r.Body)
	}

	// A Reader of the account sees which identity it has, but not the
	// principal and client ids of an identity it may not read.
	reader := MustServicePrincipal(t, ts, "reader-acctc")
	MustAssign(t, ts, admin, acct, rm.RoleReader, reader.ObjectID)
	r = MustARM(t, ts, MustToken(t, ts, reader.ClientID, reader.Secret, armScope), "GET", acct+v, "")
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.Body), "idB") || strings.Contains(string(r.Body), principalB) {
		t.Errorf("reader's view of the account: %s", r.Body)
	}
	pr := batchRaw(t, ts, batchToken(t, ts, reader.ClientID, reader.Secret), "GET", "acctc", "/pools/pc?api-version="+dataAPIVersion, "")
	if pr.Status != http.StatusOK || !strings.Contains(string(pr.Body), "idC") || strings.Contains(string(pr.Body), principalC) {
		t.Errorf("reader's view of the pool: %d %s", pr.Status, pr.Body)
	}
}
