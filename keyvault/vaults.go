package keyvault

import (
	"context"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"custody"
	"custody/rm"
)

// Resource type and provider names of vaults, as ARM spells them.
const (
	Namespace        = "Microsoft.KeyVault"
	VaultType        = "Microsoft.KeyVault/vaults"
	DeletedVaultType = "Microsoft.KeyVault/deletedVaults"
)

// Retention limits of soft-deleted vaults, in days.
const (
	MinRetentionDays     = 7
	MaxRetentionDays     = 90
	DefaultRetentionDays = 90
	// MaxAccessPolicies is the most access policies one vault may hold.
	MaxAccessPolicies = 1024
)

// NetworkACLs are a vault's network rules. Custody serves every vault on its
// one listener, so it keeps and echoes these without enforcing them.
type NetworkACLs struct {
	Bypass              string   `json:"bypass,omitempty"`
	DefaultAction       string   `json:"defaultAction,omitempty"`
	IPRules             []string `json:"ipRules,omitempty"`
	VirtualNetworkRules []string `json:"virtualNetworkRules,omitempty"`
}

// Permission names of the other object kinds access policies cover. Custody's
// vaults hold keys only; these are accepted and stored so that policies
// written for Azure keep working.
var (
	SecretPermissions = []string{"all", "backup", "delete", "get", "list", "purge", "recover", "restore", "set"}

	CertificatePermissions = []string{"all", "backup", "create", "delete", "deleteissuers", "get", "getissuers",
		"import", "list", "listissuers", "managecontacts", "manageissuers", "purge", "recover", "restore", "setissuers", "update"}

	StoragePermissions = []string{"all", "backup", "delete", "deletesas", "get", "getsas", "list", "listsas",
		"purge", "recover", "regeneratekey", "restore", "set", "setsas", "update"}
)

// VaultUpdate is what a create-or-update (PUT) or update (PATCH) of a vault
// asks for. A nil field is not part of the request: on create it takes its
// default, on update it keeps its current value.
type VaultUpdate struct {
	Location *string
	// Tags replace the vault's tags when not nil.
	Tags map[string]string

	TenantID  *string
	SKUFamily *string
	SKU       *string
	// AccessPolicies replace the vault's policies when not nil (an empty,
	// non-nil list removes them all).
	AccessPolicies *[]AccessPolicy

	EnableSoftDelete             *bool
	SoftDeleteRetentionDays      *int
	EnablePurgeProtection        *bool
	EnableRbacAuthorization      *bool
	EnabledForDeployment         *bool
	EnabledForDiskEncryption     *bool
	EnabledForTemplateDeployment *bool
	PublicNetworkAccess          *string
	NetworkACLs                  *NetworkACLs

	// CreateMode is "default" (or empty) or "recover". Only PUT uses it.
	CreateMode string
}

// AccessPolicyOp is the kind of an access policy update.
type AccessPolicyOp string

// Access policy update kinds (the last path segment of ARM's
// vaults/{name}/accessPolicies/{kind}).
const (
	AccessPolicyAdd     AccessPolicyOp = "add"
	AccessPolicyReplace AccessPolicyOp = "replace"
	AccessPolicyRemove  AccessPolicyOp = "remove"
)

// NameAvailability answers a name availability check.
type NameAvailability struct {
	Available bool
	Reason    string // "AccountNameInvalid" or "AlreadyExists" when not available
	Message   string
}

// vaultMu serializes changes to vaults within this process, so that two
// concurrent creates of one name cannot both succeed.
var vaultMu sync.Mutex

// ValidateVaultName checks a vault name: 3 to 24 letters, digits and
// hyphens, starting with a letter, ending with a letter or digit, with no
// consecutive hyphens. Vault names are host names.
func ValidateVaultName(name string) error {
	if !vaultNameOK(name) {
		return custody.Errorf(custody.KindInvalid, "VaultNameNotValid",
			"The vault name '%s' is invalid. A vault's name must be between 3-24 alphanumeric characters. The name must begin with a letter, end with a letter or digit, and not contain consecutive hyphens.", name)
	}
	return nil
}

var vaultNameChars = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]$`)

func vaultNameOK(name string) bool {
	return vaultNameChars.MatchString(name) && !strings.Contains(name, "--")
}

func vaultNotFound(rg, name string) error {
	return custody.Errorf(custody.KindNotFound, "ResourceNotFound",
		"The Resource 'Microsoft.KeyVault/vaults/%s' under resource group '%s' was not found. Check the name and group (custody keyvault list), or recover it if it was deleted (custody keyvault list-deleted).", name, rg)
}

func deletedVaultNotFound(location, name string) error {
	return custody.Errorf(custody.KindNotFound, "DeletedVaultNotFound",
		"No deleted vault named '%s' exists in location '%s'. List deleted vaults with custody keyvault list-deleted.", name, location)
}

// sameLocation compares Azure locations the way ARM does: case and spaces
// do not matter ("West US 2" is "westus2").
func sameLocation(a, b string) bool {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, " ", "")) }
	return norm(a) == norm(b)
}

// lookup returns the vault with this name, live or soft-deleted. A
// soft-deleted vault whose retention period has ended is purged on the way
// and reported as not found.
func (s *Service) lookup(ctx context.Context, name string) (*Vault, error) {
	v, err := s.Vaults.Vault(ctx, name)
	if err != nil {
		return nil, err
	}
	if v.DeletedAt != nil && v.ScheduledPurgeAt != nil && !s.now().Before(*v.ScheduledPurgeAt) {
		hv := s.vaultVersions(ctx, v.Name)
		if err := s.Vaults.PurgeVault(ctx, v.Name); err != nil && !custody.IsNotFound(err) {
			return nil, err
		}
		s.destroyHSMKeys(hv)
		s.publish(v.Name, ChangeVaultPurged, "", "")
		return nil, custody.Errorf(custody.KindNotFound, "VaultNotFound", "Vault '%s' was purged at the end of its retention period.", name)
	}
	return v, nil
}

// GetVault returns the live vault name in resource group rg (ResourceNotFound
// otherwise, including while it is soft-deleted).
func (s *Service) GetVault(ctx context.Context, sub, rg, name string) (*Vault, error) {
	v, err := s.lookup(ctx, name)
	if custody.IsNotFound(err) {
		return nil, vaultNotFound(rg, name)
	}
	if err != nil {
		return nil, err
	}
	if v.DeletedAt != nil || !strings.EqualFold(v.SubscriptionID, sub) || !strings.EqualFold(v.ResourceGroup, rg) {
		return nil, vaultNotFound(rg, name)
	}
	return v, nil
}

// PutVault creates or updates the vault name in resource group rg (ARM's
// PUT) and reports whether it was created. The group must exist. The caller
// in ctx becomes the vault's creator.
//
// Errors: VaultNameNotValid, BadRequest (a property breaks a rule: the
// message names it), ResourceGroupNotFound, VaultAlreadyExists (the name is
// taken by a vault elsewhere), ConflictError (the name belongs to a
// soft-deleted vault: recover or purge it first).
func (s *Service) PutVault(ctx context.Context, sub, rg, name string, u VaultUpdate) (*Vault, bool, error) {
	if err := ValidateVaultName(name); err != nil {
		return nil, false, err
	}
	mode := strings.ToLower(u.CreateMode)
	if mode != "" && mode != "default" && mode != "recover" {
		return nil, false, badProperty("createMode", "The property \"createMode\" of vault '%s' must be \"default\" or \"recover\", not %q.", name, u.CreateMode)
	}
	if err := custody.CheckTags(u.Tags, "vault '"+name+"'"); err != nil {
		return nil, false, err
	}
	if s.RM != nil {
		if err := s.RM.CheckSubscription(sub); err != nil {
			return nil, false, err
		}
	}
	group, err := s.group(ctx, sub, rg)
	if err != nil {
		return nil, false, err
	}
	vaultMu.Lock()
	defer vaultMu.Unlock()

	cur, err := s.lookup(ctx, name)
	if err != nil && !custody.IsNotFound(err) {
		return nil, false, err
	}
	if custody.IsNotFound(err) {
		cur = nil
	}
	if mode == "recover" {
		v, err := s.recover(ctx, cur, sub, group, name, u)
		return v, false, err
	}
	if cur != nil && cur.DeletedAt != nil {
		return nil, false, custody.Errorf(custody.KindConflict, "ConflictError",
			"A vault with the same name '%s' already exists in deleted state (deleted from resource group '%s'). You need to either recover it (PUT with properties.createMode \"recover\", custody keyvault recover --name %s) or purge it (custody keyvault purge --name %s) before the name can be used again.",
			name, cur.ResourceGroup, name, name)
	}
	if cur != nil && (!strings.EqualFold(cur.SubscriptionID, sub) || !strings.EqualFold(cur.ResourceGroup, rg)) {
		return nil, false, custody.Errorf(custody.KindConflict, "VaultAlreadyExists",
			"The vault name '%s' is already in use. Vault names are unique across the server because they are host names; choose another name.", name)
	}
	if u.Location == nil || strings.TrimSpace(*u.Location) == "" {
		if cur == nil {
			return nil, false, custody.Errorf(custody.KindInvalid, "LocationRequired",
				"The location property is required to create vault '%s' (for example \"westus2\").", name)
		}
	} else {
		loc, ok := custody.NormalizeLocation(*u.Location)
		if !ok {
			return nil, false, custody.LocationError(*u.Location, "Microsoft.KeyVault/vaults")
		}
		u.Location = &loc
	}
	if u.TenantID == nil || *u.TenantID == "" {
		return nil, false, badProperty("properties.tenantId", "The property \"tenantId\" is required for vault '%s'. Use this server's tenant id %s.", name, s.TenantID)
	}
	if u.SKU == nil || *u.SKU == "" {
		return nil, false, badProperty("properties.sku", "The property \"sku\" is required for vault '%s': {\"family\":\"A\",\"name\":\"standard\"} or {\"family\":\"A\",\"name\":\"premium\"}.", name)
	}

	now := s.now().UTC()
	created := cur == nil
	v := cur
	if created {
		caller, _ := custody.CallerFrom(ctx)
		v = &Vault{
			ID:             rm.ResourceID(group.SubscriptionID, group.Name, Namespace, "vaults", name),
			SubscriptionID: group.SubscriptionID, ResourceGroup: group.Name, Name: name,
			Location:                strings.TrimSpace(*u.Location),
			SoftDeleteRetentionDays: DefaultRetentionDays,
			CreatedAt:               now,
			CreatedBy:               caller.ObjectID,
			AccessPolicies:          []AccessPolicy{},
		}
	} else {
		c := *cur
		v = &c
		if u.Location != nil && strings.TrimSpace(*u.Location) != "" && !sameLocation(*u.Location, cur.Location) {
			return nil, false, custody.Errorf(custody.KindConflict, "InvalidResourceLocation",
				"The vault '%s' already exists in location '%s'; it cannot be moved to '%s'. Use location '%s' or create a vault with another name.", name, cur.Location, *u.Location, cur.Location)
		}
	}
	// A PUT replaces the tags.
	v.Tags = u.Tags
	if v.Tags == nil {
		v.Tags = map[string]string{}
	}
	if err := s.apply(v, cur, u); err != nil {
		return nil, false, err
	}
	if err := s.checkGrantChange(ctx, cur, v); err != nil {
		return nil, false, err
	}
	// az keyvault create gives its caller an access policy with full
	// permissions in the body it sends unless --no-self-perms (then it sends
	// "accessPolicies": []). Custody gives the creator that policy on the
	// server too, but only when a PUT creates the vault with no
	// accessPolicies field at all and RBAC off, so that SDK programs that
	// create a vault can use it at once. An explicit list, empty included,
	// is kept as given, as Azure keeps it; updates never add a policy.
	if created && u.AccessPolicies == nil && !v.EnableRbacAuthorization {
		if caller, ok := custody.CallerFrom(ctx); ok && caller.ObjectID != "" {
			v.AccessPolicies = []AccessPolicy{CreatorAccessPolicy(s.TenantID, caller.ObjectID)}
		}
	}
	v.UpdatedAt = now
	if err := s.Vaults.PutVault(ctx, v); err != nil {
		return nil, false, err
	}
	s.publishVaultUpdate(cur, v)
	return v, created, nil
}

// CreatorAccessPolicy is the access policy a vault's creator gets when the
// create request names none: every key, secret and certificate permission
// (spelled out, not "all").
func CreatorAccessPolicy(tenantID, objectID string) AccessPolicy {
	without := func(perms []string) []string {
		out := []string{}
		for _, p := range perms {
			if p != "all" {
				out = append(out, p)
			}
		}
		return out
	}
	return AccessPolicy{
		TenantID: tenantID, ObjectID: objectID,
		Keys: without(KeyPermissions), Secrets: without(SecretPermissions),
		Certificates: without(CertificatePermissions), Storage: []string{},
	}
}

// recover restores a soft-deleted vault with its keys (ARM's PUT with
// createMode "recover").
func (s *Service) recover(ctx context.Context, cur *Vault, sub string, group *rm.ResourceGroup, name string, u VaultUpdate) (*Vault, error) {
	if cur == nil {
		return nil, custody.Errorf(custody.KindNotFound, "DeletedVaultNotFound",
			"There is no deleted vault named '%s' to recover. It may have been purged; create it with createMode \"default\" instead.", name)
	}
	if cur.DeletedAt == nil {
		return nil, custody.Errorf(custody.KindConflict, "VaultNotDeleted",
			"Vault '%s' is not deleted, so it cannot be recovered. Update it with createMode \"default\" instead.", name)
	}
	if !strings.EqualFold(cur.SubscriptionID, sub) || !strings.EqualFold(cur.ResourceGroup, group.Name) {
		return nil, custody.Errorf(custody.KindConflict, "ConflictError",
			"The deleted vault '%s' belonged to resource group '%s'; recover it into that group.", name, cur.ResourceGroup)
	}
	if u.Location != nil && strings.TrimSpace(*u.Location) != "" && !sameLocation(*u.Location, cur.Location) {
		return nil, custody.Errorf(custody.KindConflict, "InvalidResourceLocation",
			"The deleted vault '%s' was in location '%s'; recover it with that location, not '%s'.", name, cur.Location, *u.Location)
	}
	if u.TenantID != nil && *u.TenantID != "" && !strings.EqualFold(*u.TenantID, s.TenantID) {
		return nil, wrongTenant(name, *u.TenantID, s.TenantID)
	}
	v := *cur
	v.DeletedAt, v.ScheduledPurgeAt = nil, nil
	v.UpdatedAt = s.now().UTC()
	if u.Tags != nil {
		v.Tags = u.Tags
	}
	if err := s.Vaults.PutVault(ctx, &v); err != nil {
		return nil, err
	}
	s.publish(v.Name, ChangeVaultRecovered, "", "")
	return &v, nil
}

// UpdateVault changes the properties a PATCH names and keeps the others.
func (s *Service) UpdateVault(ctx context.Context, sub, rg, name string, u VaultUpdate) (*Vault, error) {
	if err := custody.CheckTags(u.Tags, "vault '"+name+"'"); err != nil {
		return nil, err
	}
	if _, err := oneOf(name, "properties.createMode", u.CreateMode, "default", "recover"); err != nil {
		return nil, err
	}
	vaultMu.Lock()
	defer vaultMu.Unlock()
	cur, err := s.GetVault(ctx, sub, rg, name)
	if err != nil {
		return nil, err
	}
	v := *cur
	if u.Tags != nil {
		v.Tags = u.Tags
	}
	if err := s.apply(&v, cur, u); err != nil {
		return nil, err
	}
	if err := s.checkGrantChange(ctx, cur, &v); err != nil {
		return nil, err
	}
	v.UpdatedAt = s.now().UTC()
	if err := s.Vaults.PutVault(ctx, &v); err != nil {
		return nil, err
	}
	s.publishVaultUpdate(cur, &v)
	return &v, nil
}

// ActionRoleAssignmentsWrite is the permission that changing who may reach a
// vault's keys other than through access policies needs: switching the
// permission model, or writing access policies of an RBAC vault.
const ActionRoleAssignmentsWrite = "Microsoft.Authorization/roleAssignments/write"

// checkGrantChange refuses a change from cur to next that would let the
// caller in ctx grant access to keys beyond what its roles allow. Azure lets
// anyone who may write a vault write its access policies while they are in
// force (enableRbacAuthorization off); but switching the permission model,
// in either direction, needs Microsoft.Authorization/roleAssignments/write at
// the vault (Owner, User Access Administrator), as in Azure. Custody asks
// the same of access policy changes on an RBAC vault that grant anything new:
// they are not in force there, but would become so on a later switch. A new vault (cur nil) has no
// keys yet and is not checked.
func (s *Service) checkGrantChange(ctx context.Context, cur, next *Vault) error {
	if cur == nil {
		return nil
	}
	modelChanged := cur.EnableRbacAuthorization != next.EnableRbacAuthorization
	dormantPolicies := cur.EnableRbacAuthorization && next.EnableRbacAuthorization && grantsMore(cur.AccessPolicies, next.AccessPolicies)
	if !modelChanged && !dormantPolicies {
		return nil
	}
	c, ok := custody.CallerFrom(ctx)
	if !ok || c.ObjectID == "" {
		return custody.Errorf(custody.KindUnauthenticated, "Unauthorized", "Changing how vault '%s' grants access needs an authenticated caller.", cur.Name)
	}
	if s.RM == nil {
		return custody.Internal(nil, "no resource manager to check roles")
	}
	ok, err := s.RM.HasRoleAt(ctx, c.ObjectID, cur.ID, ActionRoleAssignmentsWrite, false)
	if err != nil || ok {
		return err
	}
	if modelChanged {
		return custody.Errorf(custody.KindForbidden, "AuthorizationFailed",
			"The client '%s' with object id '%s' may not change the permission model of vault '%s' (enableRbacAuthorization from %t to %t): that needs permission to perform action '%s' over scope '%s' (Owner or User Access Administrator), since it changes who can reach the vault's keys.",
			c.ObjectID, c.ObjectID, cur.Name, cur.EnableRbacAuthorization, next.EnableRbacAuthorization, ActionRoleAssignmentsWrite, cur.ID)
	}
	return custody.Errorf(custody.KindForbidden, "AuthorizationFailed",
		"The client '%s' with object id '%s' may not change the access policies of vault '%s': the vault uses Azure RBAC (enableRbacAuthorization), and access policies written now would grant access if the permission model were switched, so changing them needs permission to perform action '%s' over scope '%s' (Owner or User Access Administrator). Grant access with a Key Vault role assignment instead.",
		c.ObjectID, c.ObjectID, cur.Name, ActionRoleAssignmentsWrite, cur.ID)
}

// grantsMore reports whether the access policies next grant a permission
// that those of cur do not (a new principal, or a new permission for one).
func grantsMore(cur, next []AccessPolicy) bool {
	has := func(perms []string, p string) bool {
		return slices.ContainsFunc(perms, func(x string) bool { return strings.EqualFold(x, p) || strings.EqualFold(x, "all") })
	}
	for _, n := range next {
		i := findPolicy(cur, n)
		if i < 0 {
			if len(n.Keys)+len(n.Secrets)+len(n.Certificates)+len(n.Storage) > 0 {
				return true
			}
			continue
		}
		c := cur[i]
		for _, pair := range [][2][]string{{c.Keys, n.Keys}, {c.Secrets, n.Secrets}, {c.Certificates, n.Certificates}, {c.Storage, n.Storage}} {
			for _, p := range pair[1] {
				if !has(pair[0], p) {
					return true
				}
			}
		}
	}
	return false
}

func badProperty(target, format string, args ...any) error {
	e := custody.Errorf(custody.KindInvalid, "BadRequest", format, args...)
	e.Target = target
	return e
}

func wrongTenant(name, got, want string) error {
	return badProperty("properties.tenantId",
		"The tenant id '%s' of vault '%s' is not this server's tenant. Vaults and their access policies must use tenant %s.", got, name, want)
}

// apply validates the properties of u and sets them on v. cur is the vault
// before the change (nil on create), for the rules that forbid going back.
func (s *Service) apply(v, cur *Vault, u VaultUpdate) error {
	name := v.Name
	if u.TenantID != nil {
		if !strings.EqualFold(*u.TenantID, s.TenantID) {
			return wrongTenant(name, *u.TenantID, s.TenantID)
		}
		v.TenantID = s.TenantID
	}
	if u.SKUFamily != nil && *u.SKUFamily != "" && !strings.EqualFold(*u.SKUFamily, "A") {
		return badProperty("properties.sku.family", "The SKU family '%s' of vault '%s' is not valid; use \"A\".", *u.SKUFamily, name)
	}
	if u.SKU != nil {
		switch strings.ToLower(*u.SKU) {
		case "standard", "premium":
			v.SKU = strings.ToLower(*u.SKU)
		default:
			return badProperty("properties.sku.name", "The SKU name '%s' of vault '%s' is not valid; use \"standard\" or \"premium\".", *u.SKU, name)
		}
	}
	if u.EnableSoftDelete != nil && !*u.EnableSoftDelete {
		return badProperty("properties.enableSoftDelete",
			"The property \"enableSoftDelete\" of vault '%s' cannot be set to false: soft delete is always on and cannot be disabled. Omit the property or set it to true.", name)
	}
	if u.SoftDeleteRetentionDays != nil {
		d := *u.SoftDeleteRetentionDays
		if d < MinRetentionDays || d > MaxRetentionDays {
			return badProperty("properties.softDeleteRetentionInDays",
				"The property \"softDeleteRetentionInDays\" of vault '%s' must be between %d and %d days, not %d.", name, MinRetentionDays, MaxRetentionDays, d)
		}
		if cur != nil && d != cur.SoftDeleteRetentionDays {
			return badProperty("properties.softDeleteRetentionInDays",
				"The property \"softDeleteRetentionInDays\" of vault '%s' has been set already (%d days) and it can't be modified. Omit it or send %d.", name, cur.SoftDeleteRetentionDays, cur.SoftDeleteRetentionDays)
		}
		v.SoftDeleteRetentionDays = d
	}
	if u.EnablePurgeProtection != nil {
		if !*u.EnablePurgeProtection && cur != nil && cur.EnablePurgeProtection {
			return badProperty("properties.enablePurgeProtection",
				"The property \"enablePurgeProtection\" of vault '%s' cannot be set to false. Enabling the purge protection for a vault is an irreversible action; omit the property or send true.", name)
		}
		v.EnablePurgeProtection = *u.EnablePurgeProtection
	}
	setBool := func(dst *bool, src *bool) {
		if src != nil {
			*dst = *src
		}
	}
	setBool(&v.EnableRbacAuthorization, u.EnableRbacAuthorization)
	setBool(&v.EnabledForDeployment, u.EnabledForDeployment)
	setBool(&v.EnabledForDiskEncryption, u.EnabledForDiskEncryption)
	setBool(&v.EnabledForTemplateDeployment, u.EnabledForTemplateDeployment)
	if u.PublicNetworkAccess != nil {
		pna, err := oneOf(name, "properties.publicNetworkAccess", *u.PublicNetworkAccess, "Enabled", "Disabled")
		if err != nil {
			return err
		}
		v.PublicNetworkAccess = pna
	}
	if u.NetworkACLs != nil {
		n, err := checkNetworkACLs(name, *u.NetworkACLs)
		if err != nil {
			return err
		}
		v.NetworkACLs = &n
	}
	if u.AccessPolicies != nil {
		ps, err := s.checkPolicies(name, *u.AccessPolicies)
		if err != nil {
			return err
		}
		v.AccessPolicies = ps
	}
	if v.AccessPolicies == nil {
		v.AccessPolicies = []AccessPolicy{}
	}
	return nil
}

// Limits of a vault's network rules, as Azure Key Vault sets them.
const (
	MaxIPRules             = 1000
	MaxVirtualNetworkRules = 200
)

// oneOf returns value in the spelling of the allowed value it matches
// case-insensitively ("" when value is empty: the property takes its
// default), or a BadRequest naming the property and the allowed values.
func oneOf(vault, property, value string, allowed ...string) (string, error) {
	if value == "" {
		return "", nil
	}
	for _, a := range allowed {
		if strings.EqualFold(value, a) {
			return a, nil
		}
	}
	return "", badProperty(property, "The value '%s' of property \"%s\" of vault '%s' is not valid; use one of: %s.",
		clipValue(value), property[strings.LastIndex(property, ".")+1:], vault, strings.Join(allowed, ", "))
}

func clipValue(s string) string {
	if len(s) > 100 {
		return strings.ToValidUTF8(s[:100], "") + "..."
	}
	return s
}

// subnetID matches the resource id of a virtual network's subnet, the only
// thing a virtual network rule may name.
var subnetID = regexp.MustCompile(`(?i)^/subscriptions/[^/]{1,64}/resourceGroups/[-\w._()]{1,90}/providers/Microsoft\.Network/virtualNetworks/[^/]{1,80}/subnets/[^/]{1,80}$`)

// checkNetworkACLs validates a vault's network rules and returns them with
// enum values in Azure's spelling: defaultAction Allow or Deny, bypass
// AzureServices or None, IP rules IPv4 addresses or CIDR ranges, virtual
// network rules subnet resource ids.
func checkNetworkACLs(vault string, n NetworkACLs) (NetworkACLs, error) {
	var err error
	if n.DefaultAction, err = oneOf(vault, "properties.networkAcls.defaultAction", n.DefaultAction, "Allow", "Deny"); err != nil {
		return n, err
	}
	if n.Bypass, err = oneOf(vault, "properties.networkAcls.bypass", n.Bypass, "AzureServices", "None"); err != nil {
		return n, err
	}
	if len(n.IPRules) > MaxIPRules {
		return n, badProperty("properties.networkAcls.ipRules",
			"Vault '%s' would have %d IP rules; a vault can hold at most %d. Use wider CIDR ranges.", vault, len(n.IPRules), MaxIPRules)
	}
	if len(n.VirtualNetworkRules) > MaxVirtualNetworkRules {
		return n, badProperty("properties.networkAcls.virtualNetworkRules",
			"Vault '%s' would have %d virtual network rules; a vault can hold at most %d.", vault, len(n.VirtualNetworkRules), MaxVirtualNetworkRules)
	}
	ips := make([]string, 0, len(n.IPRules))
	for i, ip := range n.IPRules {
		ip = strings.TrimSpace(ip)
		if !isIPv4Rule(ip) {
			return n, badProperty("properties.networkAcls.ipRules",
				"IP rule %d of vault '%s' has value '%s', which is neither an IPv4 address (such as 203.0.113.7) nor an IPv4 CIDR range (such as 203.0.113.0/24).", i, vault, clipValue(ip))
		}
		ips = append(ips, ip)
	}
	n.IPRules = ips
	for i, id := range n.VirtualNetworkRules {
		if !subnetID.MatchString(id) {
			return n, badProperty("properties.networkAcls.virtualNetworkRules",
				"Virtual network rule %d of vault '%s' has id '%s', which is not a subnet's resource id; use /subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Network/virtualNetworks/{network}/subnets/{subnet}.", i, vault, clipValue(id))
		}
	}
	return n, nil
}

// isIPv4Rule reports whether s is an IPv4 address or an IPv4 CIDR range.
func isIPv4Rule(s string) bool {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return err == nil && p.Addr().Is4()
	}
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is4()
}

// checkPolicies validates access policies and returns them with permission
// names in Azure's canonical case.
func (s *Service) checkPolicies(vault string, ps []AccessPolicy) ([]AccessPolicy, error) {
	if len(ps) > MaxAccessPolicies {
		return nil, badProperty("properties.accessPolicies",
			"Vault '%s' would have %d access policies; a vault can hold at most %d. Grant access to groups, or use role-based access (enableRbacAuthorization).", vault, len(ps), MaxAccessPolicies)
	}
	out := make([]AccessPolicy, 0, len(ps))
	for i, p := range ps {
		if p.TenantID == "" {
			p.TenantID = s.TenantID
		}
		if !strings.EqualFold(p.TenantID, s.TenantID) {
			return nil, badProperty("properties.accessPolicies",
				"Access policy %d of vault '%s' names tenant '%s', but access policies must use this server's tenant %s.", i, vault, p.TenantID, s.TenantID)
		}
		p.TenantID = s.TenantID
		if !isGUID(p.ObjectID) {
			return nil, badProperty("properties.accessPolicies",
				"Access policy %d of vault '%s' has object id '%s', which is not a GUID. Use the principal's object id (for a managed identity, its principalId).", i, vault, p.ObjectID)
		}
		if p.ApplicationID != "" && !isGUID(p.ApplicationID) {
			return nil, badProperty("properties.accessPolicies",
				"Access policy %d of vault '%s' has application id '%s', which is not a GUID.", i, vault, p.ApplicationID)
		}
		var err error
		if p.Keys, err = canonicalPermissions(vault, "keys", p.Keys, KeyPermissions); err != nil {
			return nil, err
		}
		if p.Secrets, err = canonicalPermissions(vault, "secrets", p.Secrets, SecretPermissions); err != nil {
			return nil, err
		}
		if p.Certificates, err = canonicalPermissions(vault, "certificates", p.Certificates, CertificatePermissions); err != nil {
			return nil, err
		}
		if p.Storage, err = canonicalPermissions(vault, "storage", p.Storage, StoragePermissions); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// canonicalPermissions maps permission names to Azure's spelling (matching
// case-insensitively) and drops duplicates.
func canonicalPermissions(vault, kind string, perms, valid []string) ([]string, error) {
	out := []string{}
	for _, p := range perms {
		i := slices.IndexFunc(valid, func(v string) bool { return strings.EqualFold(v, strings.TrimSpace(p)) })
		if i < 0 {
			return nil, badProperty("properties.accessPolicies",
				"'%s' is not a valid %s permission (vault '%s'). Valid %s permissions: %s.", p, kind, vault, kind, strings.Join(valid, ", "))
		}
		if !slices.Contains(out, valid[i]) {
			out = append(out, valid[i])
		}
	}
	return out, nil
}

var guidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func isGUID(s string) bool { return guidPattern.MatchString(s) }

func (s *Service) group(ctx context.Context, sub, rg string) (*rm.ResourceGroup, error) {
	if s.RM == nil {
		return &rm.ResourceGroup{SubscriptionID: sub, Name: rg, ID: rm.GroupID(sub, rg)}, nil
	}
	return s.RM.ResourceGroup(ctx, sub, rg)
}

// UpdateAccessPolicies adds, replaces or removes access policies of a vault
// (ARM's vaults/{name}/accessPolicies/{kind}) and returns the vault.
//
// add merges the permissions of each given policy into the vault's policy
// for the same object id and application id (creating it if needed); remove
// takes the given permissions away and drops policies left with none (a
// given policy with no permissions at all removes the whole entry); replace
// sets the vault's policies to the given list.
func (s *Service) UpdateAccessPolicies(ctx context.Context, sub, rg, name string, op AccessPolicyOp, ps []AccessPolicy) (*Vault, error) {
	switch AccessPolicyOp(strings.ToLower(string(op))) {
	case AccessPolicyAdd, AccessPolicyReplace, AccessPolicyRemove:
		op = AccessPolicyOp(strings.ToLower(string(op)))
	default:
		return nil, custody.Errorf(custody.KindInvalid, "BadRequest",
			"The access policy update kind '%s' of vault '%s' is not valid; use add, replace or remove.", op, name)
	}
	vaultMu.Lock()
	defer vaultMu.Unlock()
	cur, err := s.GetVault(ctx, sub, rg, name)
	if err != nil {
		return nil, err
	}
	given, err := s.checkPolicies(name, ps)
	if err != nil {
		return nil, err
	}
	v := *cur
	switch op {
	case AccessPolicyReplace:
		v.AccessPolicies = given
	case AccessPolicyAdd:
		v.AccessPolicies = slices.Clone(cur.AccessPolicies)
		for _, g := range given {
			i := findPolicy(v.AccessPolicies, g)
			if i < 0 {
				v.AccessPolicies = append(v.AccessPolicies, g)
				continue
			}
			p := &v.AccessPolicies[i]
			p.Keys = union(p.Keys, g.Keys)
			p.Secrets = union(p.Secrets, g.Secrets)
			p.Certificates = union(p.Certificates, g.Certificates)
			p.Storage = union(p.Storage, g.Storage)
		}
	case AccessPolicyRemove:
		v.AccessPolicies = slices.Clone(cur.AccessPolicies)
		for _, g := range given {
			i := findPolicy(v.AccessPolicies, g)
			if i < 0 {
				continue
			}
			p := &v.AccessPolicies[i]
			if len(g.Keys)+len(g.Secrets)+len(g.Certificates)+len(g.Storage) == 0 {
				p.Keys, p.Secrets, p.Certificates, p.Storage = nil, nil, nil, nil
			} else {
				p.Keys = minus(p.Keys, g.Keys)
				p.Secrets = minus(p.Secrets, g.Secrets)
				p.Certificates = minus(p.Certificates, g.Certificates)
				p.Storage = minus(p.Storage, g.Storage)
			}
		}
		v.AccessPolicies = slices.DeleteFunc(v.AccessPolicies, func(p AccessPolicy) bool {
			return len(p.Keys)+len(p.Secrets)+len(p.Certificates)+len(p.Storage) == 0
		})
	}
	if v.AccessPolicies == nil {
		v.AccessPolicies = []AccessPolicy{}
	}
	if len(v.AccessPolicies) > MaxAccessPolicies {
		return nil, badProperty("properties.accessPolicies",
			"Vault '%s' would have %d access policies; a vault can hold at most %d.", name, len(v.AccessPolicies), MaxAccessPolicies)
	}
	if err := s.checkGrantChange(ctx, cur, &v); err != nil {
		return nil, err
	}
	v.UpdatedAt = s.now().UTC()
	if err := s.Vaults.PutVault(ctx, &v); err != nil {
		return nil, err
	}
	s.publishVaultUpdate(cur, &v)
	return &v, nil
}

func findPolicy(ps []AccessPolicy, p AccessPolicy) int {
	return slices.IndexFunc(ps, func(x AccessPolicy) bool {
		return strings.EqualFold(x.ObjectID, p.ObjectID) && strings.EqualFold(x.ApplicationID, p.ApplicationID)
	})
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, x := range b {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

func minus(a, b []string) []string {
	out := []string{}
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// DeleteVault soft-deletes a vault: it becomes a deleted vault, keeping its
// keys, until it is recovered, purged, or its retention period ends. Role
// assignments at or below the vault are removed (they are not restored on
// recover). found is false when there was no such live vault, which ARM
// answers with 204.
func (s *Service) DeleteVault(ctx context.Context, sub, rg, name string) (found bool, err error) {
	vaultMu.Lock()
	defer vaultMu.Unlock()
	v, err := s.GetVault(ctx, sub, rg, name)
	if custody.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, s.softDelete(ctx, v)
}

func (s *Service) softDelete(ctx context.Context, v *Vault) error {
	now := s.now().UTC()
	purge := now.Add(time.Duration(v.SoftDeleteRetentionDays) * 24 * time.Hour)
	d := *v
	d.DeletedAt, d.ScheduledPurgeAt, d.UpdatedAt = &now, &purge, now
	if err := s.Vaults.PutVault(ctx, &d); err != nil {
		return err
	}
	s.ForgetVault(v.Name)
	s.publish(v.Name, ChangeVaultDeleted, "", "")
	if s.RM != nil {
		if err := s.RM.Store.DeleteRoleAssignmentsUnder(ctx, v.ID); err != nil {
			return err
		}
	}
	return nil
}

// DeleteInGroup soft-deletes every vault of a resource group. It is the key
// vault's rm.GroupCleaner, called when the group is deleted.
func (s *Service) DeleteInGroup(ctx context.Context, sub, rg string) error {
	vaultMu.Lock()
	defer vaultMu.Unlock()
	vs, err := s.Vaults.ListVaults(ctx, sub, rg, false)
	if err != nil {
		return err
	}
	for _, v := range vs {
		if err := s.softDelete(ctx, v); err != nil {
			return err
		}
	}
	return nil
}

var _ rm.GroupCleaner = (*Service)(nil)

// ListVaults lists the live vaults of a subscription, or of one resource
// group when rg is not empty, by name; top > 0 keeps the first top.
func (s *Service) ListVaults(ctx context.Context, sub, rg string, top int) ([]*Vault, error) {
	if rg != "" {
		if _, err := s.group(ctx, sub, rg); err != nil {
			return nil, err
		}
	}
	vs, err := s.Vaults.ListVaults(ctx, sub, rg, false)
	if err != nil {
		return nil, err
	}
	if top > 0 && len(vs) > top {
		vs = vs[:top]
	}
	return vs, nil
}

// DeletedVault returns the soft-deleted vault name in location.
func (s *Service) DeletedVault(ctx context.Context, sub, location, name string) (*Vault, error) {
	v, err := s.lookup(ctx, name)
	if custody.IsNotFound(err) {
		return nil, deletedVaultNotFound(location, name)
	}
	if err != nil {
		return nil, err
	}
	if v.DeletedAt == nil || !strings.EqualFold(v.SubscriptionID, sub) || !sameLocation(v.Location, location) {
		return nil, deletedVaultNotFound(location, name)
	}
	return v, nil
}

// ListDeletedVaults lists the soft-deleted vaults of a subscription whose
// retention period has not ended.
func (s *Service) ListDeletedVaults(ctx context.Context, sub string) ([]*Vault, error) {
	vs, err := s.Vaults.ListVaults(ctx, sub, "", true)
	if err != nil {
		return nil, err
	}
	now := s.now()
	return slices.DeleteFunc(vs, func(v *Vault) bool {
		return v.ScheduledPurgeAt != nil && !now.Before(*v.ScheduledPurgeAt)
	}), nil
}

// PurgeDeletedVault permanently removes a soft-deleted vault and its keys.
// Under purge protection this is refused until the retention period ends
// (the vault is then purged automatically).
func (s *Service) PurgeDeletedVault(ctx context.Context, sub, location, name string) error {
	vaultMu.Lock()
	defer vaultMu.Unlock()
	v, err := s.DeletedVault(ctx, sub, location, name)
	if err != nil {
		return err
	}
	if v.EnablePurgeProtection && v.ScheduledPurgeAt != nil && s.now().Before(*v.ScheduledPurgeAt) {
		return custody.Errorf(custody.KindConflict, "PurgeProtectionEnabled",
			"Deleted vault '%s' has purge protection enabled, so it cannot be purged before its retention period ends on %s; it will be purged automatically then. It can still be recovered (PUT with properties.createMode \"recover\").",
			name, v.ScheduledPurgeAt.UTC().Format(time.RFC3339))
	}
	hv := s.vaultVersions(ctx, v.Name)
	if err := s.Vaults.PurgeVault(ctx, v.Name); err != nil {
		return err
	}
	s.ForgetVault(v.Name)
	s.destroyHSMKeys(hv)
	s.publish(v.Name, ChangeVaultPurged, "", "")
	return nil
}

// PurgeExpiredVaults purges soft-deleted vaults whose retention period has
// ended, and returns how many it purged.
func (s *Service) PurgeExpiredVaults(ctx context.Context) (int, error) {
	vaultMu.Lock()
	defer vaultMu.Unlock()
	vs, err := s.Vaults.VaultsDueForPurge(ctx, s.now())
	if err != nil {
		return 0, err
	}
	n := 0
	for _, v := range vs {
		hv := s.vaultVersions(ctx, v.Name)
		if err := s.Vaults.PurgeVault(ctx, v.Name); err != nil && !custody.IsNotFound(err) {
			return n, err
		}
		s.ForgetVault(v.Name)
		s.destroyHSMKeys(hv)
		s.publish(v.Name, ChangeVaultPurged, "", "")
		n++
	}
	return n, nil
}

// CheckNameAvailability reports whether a vault could be created with this
// name: it must be valid and not used by a live or soft-deleted vault.
func (s *Service) CheckNameAvailability(ctx context.Context, name string) (NameAvailability, error) {
	if !vaultNameOK(name) {
		return NameAvailability{Reason: "AccountNameInvalid", Message: custody.ErrorMessage(ValidateVaultName(name))}, nil
	}
	v, err := s.lookup(ctx, name)
	if custody.IsNotFound(err) {
		return NameAvailability{Available: true}, nil
	}
	if err != nil {
		return NameAvailability{}, err
	}
	msg := "The vault name '" + name + "' is already in use."
	if v.DeletedAt != nil {
		msg = "The vault name '" + name + "' is reserved by a soft-deleted vault until it is purged (scheduled " +
			v.ScheduledPurgeAt.UTC().Format(time.RFC3339) + "). Recover or purge that vault, or choose another name."
	}
	return NameAvailability{Reason: "AlreadyExists", Message: msg}, nil
}
