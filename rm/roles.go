package rm

import (
	"strings"
)

// RoleDefinition is a built-in role: the actions it allows on the control
// plane (ARM) and the data actions on data planes (key vault).
type RoleDefinition struct {
	GUID           string
	Name           string
	Description    string
	Actions        []string
	NotActions     []string
	DataActions    []string
	NotDataActions []string
}

// Built-in role ids, the same GUIDs Azure uses, so scripts that name roles by
// id keep working.
const (
	RoleOwner                       = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
	RoleContributor                 = "b24988ac-6180-42a0-ab88-20f7382dd24c"
	RoleReader                      = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
	RoleUserAccessAdministrator     = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
	RoleKeyVaultAdministrator       = "00482a5a-887f-4fb3-b363-3b7fe8e74483"
	RoleKeyVaultCryptoOfficer       = "14b46e9e-c2b7-41b4-b07b-48a6ebf60603"
	RoleKeyVaultCryptoUser          = "12338af0-0e69-4776-bea7-57ae8d297424"
	RoleKeyVaultCryptoServiceEncUse = "e147488a-f6f5-4113-8e2d-b22465e65bf6"
	RoleKeyVaultReader              = "21090545-7ca7-4776-b22c-e363652d74d2"
	RoleManagedIdentityOperator     = "f1a07417-d97a-45cb-824c-7a7467783830"
)

// ActionAssignIdentity is the permission to attach a user-assigned identity
// to a resource (a batch account, a pool): whoever attaches it can make the
// resource act as the identity.
const ActionAssignIdentity = "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action"

// BuiltinRoles are the roles Custody knows.
var BuiltinRoles = []RoleDefinition{
	{GUID: RoleOwner, Name: "Owner", Description: "Grants full access to manage all resources, including the ability to assign roles.",
		Actions: []string{"*"}},
	{GUID: RoleContributor, Name: "Contributor", Description: "Grants full access to manage all resources, but does not allow you to assign roles.",
		Actions:    []string{"*"},
		NotActions: []string{"Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write"}},
	{GUID: RoleReader, Name: "Reader", Description: "View all resources, but does not allow you to make any changes.",
		Actions: []string{"*/read"}},
	{GUID: RoleUserAccessAdministrator, Name: "User Access Administrator", Description: "Lets you manage user access to Azure resources.",
		Actions: []string{"*/read", "Microsoft.Authorization/*"}},
	{GUID: RoleKeyVaultAdministrator, Name: "Key Vault Administrator", Description: "Perform all data plane operations on a key vault and all objects in it.",
		Actions:     []string{"Microsoft.Authorization/*/read", "Microsoft.Resources/subscriptions/resourceGroups/read", "Microsoft.KeyVault/checkNameAvailability/read", "Microsoft.KeyVault/deletedVaults/read", "Microsoft.KeyVault/locations/*/read", "Microsoft.KeyVault/vaults/*/read", "Microsoft.KeyVault/operations/read"},
		DataActions: []string{"Microsoft.KeyVault/vaults/*"}},
	{GUID: RoleKeyVaultCryptoOfficer, Name: "Key Vault Crypto Officer", Description: "Perform any action on the keys of a key vault, except manage permissions.",
		Actions:     []string{"Microsoft.Authorization/*/read", "Microsoft.Resources/subscriptions/resourceGroups/read", "Microsoft.KeyVault/checkNameAvailability/read", "Microsoft.KeyVault/deletedVaults/read", "Microsoft.KeyVault/locations/*/read", "Microsoft.KeyVault/vaults/*/read", "Microsoft.KeyVault/operations/read"},
		DataActions: []string{"Microsoft.KeyVault/vaults/keys/*", "Microsoft.KeyVault/vaults/keyrotationpolicies/*"}},
	{GUID: RoleKeyVaultCryptoUser, Name: "Key Vault Crypto User", Description: "Perform cryptographic operations using keys.",
		DataActions: []string{"Microsoft.KeyVault/vaults/keys/read", "Microsoft.KeyVault/vaults/keys/update/action", "Microsoft.KeyVault/vaults/keys/backup/action",
			"Microsoft.KeyVault/vaults/keys/encrypt/action", "Microsoft.KeyVault/vaults/keys/decrypt/action", "Microsoft.KeyVault/vaults/keys/wrap/action",
			"Microsoft.KeyVault/vaults/keys/unwrap/action", "Microsoft.KeyVault/vaults/keys/sign/action", "Microsoft.KeyVault/vaults/keys/verify/action"}},
	{GUID: RoleKeyVaultCryptoServiceEncUse, Name: "Key Vault Crypto Service Encryption User", Description: "Read metadata of keys and perform wrap/unwrap operations.",
		Actions:     []string{"Microsoft.EventGrid/eventSubscriptions/write", "Microsoft.EventGrid/eventSubscriptions/read", "Microsoft.EventGrid/eventSubscriptions/delete"},
		DataActions: []string{"Microsoft.KeyVault/vaults/keys/read", "Microsoft.KeyVault/vaults/keys/wrap/action", "Microsoft.KeyVault/vaults/keys/unwrap/action"}},
	{GUID: RoleKeyVaultReader, Name: "Key Vault Reader", Description: "Read metadata of key vaults and its certificates, keys, and secrets.",
		Actions:     []string{"Microsoft.Authorization/*/read", "Microsoft.Resources/subscriptions/resourceGroups/read", "Microsoft.KeyVault/checkNameAvailability/read", "Microsoft.KeyVault/deletedVaults/read", "Microsoft.KeyVault/locations/*/read", "Microsoft.KeyVault/vaults/*/read", "Microsoft.KeyVault/operations/read"},
		DataActions: []string{"Microsoft.KeyVault/vaults/*/read", "Microsoft.KeyVault/vaults/secrets/readMetadata/action"}},
	{GUID: RoleManagedIdentityOperator, Name: "Managed Identity Operator", Description: "Read and Assign User Assigned Identity",
		Actions: []string{"Microsoft.ManagedIdentity/userAssignedIdentities/*/read", "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
			"Microsoft.Authorization/*/read", "Microsoft.Insights/alertRules/*", "Microsoft.Resources/subscriptions/resourceGroups/read",
			"Microsoft.Resources/deployments/*", "Microsoft.Support/*"}},
}

// RoleByGUID returns the built-in role with the given GUID.
func RoleByGUID(guid string) (*RoleDefinition, bool) {
	for i := range BuiltinRoles {
		if strings.EqualFold(BuiltinRoles[i].GUID, guid) {
			return &BuiltinRoles[i], true
		}
	}
	return nil, false
}

// RoleByName returns the built-in role with the given name (case-insensitive).
func RoleByName(name string) (*RoleDefinition, bool) {
	for i := range BuiltinRoles {
		if strings.EqualFold(BuiltinRoles[i].Name, name) {
			return &BuiltinRoles[i], true
		}
	}
	return nil, false
}

// RoleDefinitionID returns the full id of a role definition in a subscription.
func RoleDefinitionID(sub, guid string) string {
	return "/subscriptions/" + sub + "/providers/Microsoft.Authorization/roleDefinitions/" + guid
}

// Allows reports whether the role grants action (data selects data actions).
func (r *RoleDefinition) Allows(action string, data bool) bool {
	allow, deny := r.Actions, r.NotActions
	if data {
		allow, deny = r.DataActions, r.NotDataActions
	}
	for _, p := range deny {
		if MatchAction(p, action) {
			return false
		}
	}
	for _, p := range allow {
		if MatchAction(p, action) {
			return true
		}
	}
	return false
}

// MatchAction matches an action against a pattern with "*" wildcards, case
// insensitively, as Azure RBAC does: "*" matches any run of characters,
// including slashes, and a "/*/" segment also matches no segment at all, so
// that Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action (in
// Managed Identity Operator) allows .../userAssignedIdentities/assign/action.
func MatchAction(pattern, action string) bool {
	if matchWildcard(pattern, action) {
		return true
	}
	for i := 0; ; {
		j := strings.Index(pattern[i:], "/*/")
		if j < 0 {
			return false
		}
		i += j
		if MatchAction(pattern[:i]+pattern[i+2:], action) {
			return true
		}
		i += 2
	}
}

func matchWildcard(pattern, action string) bool {
	p, a := strings.ToLower(pattern), strings.ToLower(action)
	for {
		star := strings.IndexByte(p, '*')
		if star < 0 {
			return p == a
		}
		if !strings.HasPrefix(a, p[:star]) {
			return false
		}
		a, p = a[star:], p[star+1:]
		if p == "" {
			return true
		}
		// Try every split point for the star.
		for i := 0; i <= len(a); i++ {
			if matchWildcard(p, a[i:]) {
				return true
			}
		}
		return false
	}
}
