package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/batch/armbatch/v3"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

const (
	group    = "bench"
	location = "westus2"
)

var fastPoll = &runtime.PollUntilDoneOptions{Frequency: time.Second}

// bench holds the SDK clients of one run.
type bench struct {
	o        options
	s        *serverProc
	cred     azcore.TokenCredential
	armOpts  *arm.ClientOptions
	adminOID string
	vaults   *armkeyvault.VaultsClient
	accounts *armbatch.AccountClient
	tasks    *azbatch.Client // the account with the pool of local nodes
}

func newBench(ctx context.Context, s *serverProc, o options) (*bench, error) {
	cfg := cloud.Configuration{
		ActiveDirectoryAuthorityHost: s.url("login") + "/",
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: s.url("management"), Audience: "https://management.azure.com/"},
		},
	}
	cred, err := azidentity.NewClientSecretCredential(s.admin.TenantID, s.admin.ClientID, s.admin.ClientSecret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            policy.ClientOptions{Cloud: cfg, Transport: s.client},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		return nil, err
	}
	b := &bench{o: o, s: s, cred: cred,
		armOpts: &arm.ClientOptions{ClientOptions: policy.ClientOptions{Cloud: cfg, Transport: s.client}, DisableRPRegistration: true}}
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}})
	if err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	if b.adminOID, err = objectID(tok.Token); err != nil {
		return nil, err
	}
	// Resource groups have no client among the SDK modules Custody uses:
	// a plain ARM PUT.
	if err := b.armPut(ctx, tok.Token, "/subscriptions/"+s.admin.SubscriptionID+"/resourceGroups/"+group+"?api-version=2021-04-01", `{"location":"`+location+`"}`); err != nil {
		return nil, err
	}
	if b.vaults, err = armkeyvault.NewVaultsClient(s.admin.SubscriptionID, cred, b.armOpts); err != nil {
		return nil, err
	}
	if b.accounts, err = armbatch.NewAccountClient(s.admin.SubscriptionID, cred, b.armOpts); err != nil {
		return nil, err
	}
	return b, nil
}

// objectID reads the oid claim of an access token.
func objectID(token string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("the access token is not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", err
	}
	var c struct {
		OID string `json:"oid"`
	}
	if err := json.Unmarshal(b, &c); err != nil || c.OID == "" {
		return "", fmt.Errorf("the access token has no oid claim")
	}
	return c.OID, nil
}

func (b *bench) armPut(ctx context.Context, token, path, body string) error {
	req, err := http.NewRequestWithContext(ctx, "PUT", b.s.url("management")+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("PUT %s: %s %s", path, resp.Status, out)
	}
	return nil
}

// vault creates a vault with soft delete and purge protection whose access
// policies give the admin every key permission and each of others get,
// wrapKey and unwrapKey.
func (b *bench) vault(ctx context.Context, name string) error {
	return b.vaultWith(ctx, name, false)
}

// keyVaultCryptoOfficer is the built-in role "Key Vault Crypto Officer".
const keyVaultCryptoOfficer = "14b46e9e-c2b7-41b4-b07b-48a6ebf60603"

// vaultWith creates the vault; with rbac, the vault authorizes by role
// assignments, and the admin is given Key Vault Crypto Officer on it.
func (b *bench) vaultWith(ctx context.Context, name string, rbac bool) error {
	all := []*armkeyvault.KeyPermissions{to.Ptr(armkeyvault.KeyPermissionsAll)}
	props := &armkeyvault.VaultProperties{
		TenantID:                  to.Ptr(b.s.admin.TenantID),
		SKU:                       &armkeyvault.SKU{Family: to.Ptr(armkeyvault.SKUFamilyA), Name: to.Ptr(armkeyvault.SKUNameStandard)},
		EnableSoftDelete:          to.Ptr(true),
		SoftDeleteRetentionInDays: to.Ptr[int32](7),
		EnablePurgeProtection:     to.Ptr(true),
		EnableRbacAuthorization:   to.Ptr(rbac),
		AccessPolicies: []*armkeyvault.AccessPolicyEntry{{
			TenantID: to.Ptr(b.s.admin.TenantID), ObjectID: to.Ptr(b.adminOID), Permissions: &armkeyvault.Permissions{Keys: all},
		}},
	}
	if rbac {
		props.AccessPolicies = []*armkeyvault.AccessPolicyEntry{}
	}
	p, err := b.vaults.BeginCreateOrUpdate(ctx, group, name, armkeyvault.VaultCreateOrUpdateParameters{Location: to.Ptr(location), Properties: props}, nil)
	if err != nil {
		return fmt.Errorf("create vault %s: %w", name, err)
	}
	res, err := p.PollUntilDone(ctx, fastPoll)
	if err != nil {
		return fmt.Errorf("create vault %s: %w", name, err)
	}
	if !rbac {
		return nil
	}
	tok, err := b.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}})
	if err != nil {
		return err
	}
	body := `{"properties":{"roleDefinitionId":"/subscriptions/` + b.s.admin.SubscriptionID + `/providers/Microsoft.Authorization/roleDefinitions/` + keyVaultCryptoOfficer +
		`","principalId":"` + b.adminOID + `"}}`
	return b.armPut(ctx, tok.Token, *res.ID+"/providers/Microsoft.Authorization/roleAssignments/"+newGUID()+"?api-version=2022-04-01", body)
}

func newGUID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:])
}

// grant adds an access policy with get, wrapKey and unwrapKey for principal.
func (b *bench) grant(ctx context.Context, vault, principal string) error {
	_, err := b.vaults.UpdateAccessPolicy(ctx, group, vault, armkeyvault.AccessPolicyUpdateKindAdd, armkeyvault.VaultAccessPolicyParameters{
		Properties: &armkeyvault.VaultAccessPolicyProperties{AccessPolicies: []*armkeyvault.AccessPolicyEntry{{
			TenantID: to.Ptr(b.s.admin.TenantID), ObjectID: to.Ptr(principal),
			Permissions: &armkeyvault.Permissions{Keys: []*armkeyvault.KeyPermissions{
				to.Ptr(armkeyvault.KeyPermissionsGet), to.Ptr(armkeyvault.KeyPermissionsWrapKey), to.Ptr(armkeyvault.KeyPermissionsUnwrapKey)}},
		}}},
	}, nil)
	if err != nil {
		return fmt.Errorf("access policy for %s on %s: %w", principal, vault, err)
	}
	return nil
}

func (b *bench) keysClient(vault string) (*azkeys.Client, error) {
	return azkeys.NewClient(b.s.url(vault+".vault"), b.cred, &azkeys.ClientOptions{ClientOptions: policy.ClientOptions{Transport: b.s.client}})
}

// account creates a batch account (with a system-assigned identity if
// identity is set) and returns it.
func (b *bench) account(ctx context.Context, name string, identity bool) (armbatch.Account, error) {
	p := armbatch.AccountCreateParameters{Location: to.Ptr(location)}
	if identity {
		p.Identity = &armbatch.AccountIdentity{Type: to.Ptr(armbatch.ResourceIdentityTypeSystemAssigned)}
	}
	poller, err := b.accounts.BeginCreate(ctx, group, name, p, nil)
	if err != nil {
		return armbatch.Account{}, fmt.Errorf("create account %s: %w", name, err)
	}
	res, err := poller.PollUntilDone(ctx, fastPoll)
	if err != nil {
		return armbatch.Account{}, fmt.Errorf("create account %s: %w", name, err)
	}
	return res.Account, nil
}

func (b *bench) batchClient(a armbatch.Account) (*azbatch.Client, error) {
	return azbatch.NewClient("https://"+*a.Properties.AccountEndpoint, b.cred, &azbatch.ClientOptions{ClientOptions: policy.ClientOptions{Transport: b.s.client}})
}

// pool creates a pool of nodes local nodes with slots task slots each and
// waits until they are idle.
func pool(ctx context.Context, c *azbatch.Client, id string, nodes, slots int32) error {
	if _, err := c.CreatePool(ctx, azbatch.CreatePoolContent{ID: to.Ptr(id), VMSize: to.Ptr("standard_d2s_v3"),
		TargetDedicatedNodes: to.Ptr(nodes), TaskSlotsPerNode: to.Ptr(slots)}, nil); err != nil {
		return fmt.Errorf("create pool: %w", err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var states []string
		pg := c.NewListNodesPager(id, nil)
		for pg.More() {
			page, err := pg.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("list nodes: %w", err)
			}
			for _, n := range page.Value {
				states = append(states, string(*n.State))
			}
		}
		idle := 0
		for _, s := range states {
			if s == "idle" {
				idle++
			}
		}
		if idle == int(nodes) && len(states) == int(nodes) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pool %s: nodes %v after 2 minutes, want %d idle", id, states, nodes)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (b *bench) logf(format string, args ...any) {
	if b.o.verbose {
		fmt.Fprintf(os.Stderr, "custody-bench: "+format+"\n", args...)
	}
}
