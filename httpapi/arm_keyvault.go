package httpapi

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"custody"
	"custody/keyvault"
	"custody/rm"
)

// RBAC actions of the key vault's management operations.
const (
	actionVaultRead           = "Microsoft.KeyVault/vaults/read"
	actionVaultWrite          = "Microsoft.KeyVault/vaults/write"
	actionVaultDelete         = "Microsoft.KeyVault/vaults/delete"
	actionAccessPoliciesWrite = "Microsoft.KeyVault/vaults/accessPolicies/write"
	actionManagedHSMRead      = "Microsoft.KeyVault/managedHSMs/read"
	actionDeletedVaultRead    = "Microsoft.KeyVault/deletedVaults/read"
	actionDeletedVaultPurge   = "Microsoft.KeyVault/locations/deletedVaults/purge/action"
	actionCheckName           = "Microsoft.KeyVault/checkNameAvailability/read"
)

// kvARM serves Microsoft.KeyVault resources; every handler only translates
// between the wire and keyvault.Service.
type kvARM struct {
	a  *ARM
	kv *keyvault.Service
}

// RegisterKeyVault adds the key vault's resource manager routes: vaults,
// deleted vaults, access policies, name checks, and the subscription-wide
// resource list armkeyvault's NewListPager reads.
func (s *Server) RegisterKeyVault(kv *keyvault.Service) {
	h := &kvARM{a: s.arm, kv: kv}
	a := s.arm
	const sub = "/subscriptions/{subscriptionId}"
	const group = sub + "/resourceGroups/{resourceGroupName}/providers/Microsoft.KeyVault/vaults"
	const one = group + "/{vaultName}"
	v := keyVaultAPIVersions
	a.Handle(ARMRoute{Method: "PUT", Path: one, APIVersions: v, Action: actionVaultWrite, Handler: h.put})
	a.Handle(ARMRoute{Method: "PATCH", Path: one, APIVersions: v, Action: actionVaultWrite, Handler: h.patch})
	a.Handle(ARMRoute{Method: "GET", Path: one, APIVersions: v, Action: actionVaultRead, Handler: h.get})
	a.Handle(ARMRoute{Method: "DELETE", Path: one, APIVersions: v, Action: actionVaultDelete, Handler: h.delete})
	a.Handle(ARMRoute{Method: "PUT", Path: one + "/accessPolicies/{operationKind}", APIVersions: v, Action: actionAccessPoliciesWrite, Handler: h.accessPolicies})
	a.Handle(ARMRoute{Method: "GET", Path: group, APIVersions: v, Action: actionVaultRead, Handler: h.list})
	// Listing by subscription keeps the vaults the caller may read.
	a.Handle(ARMRoute{Method: "GET", Path: sub + "/providers/Microsoft.KeyVault/vaults", APIVersions: v, Handler: h.list})
	a.Handle(ARMRoute{Method: "GET", Path: sub + "/resources", APIVersions: genericResourcesAPIVersions, Handler: h.listResources})

	const deleted = sub + "/providers/Microsoft.KeyVault/locations/{location}/deletedVaults/{vaultName}"
	a.Handle(ARMRoute{Method: "GET", Path: deleted, APIVersions: v, Action: actionDeletedVaultRead, Handler: h.getDeleted})
	a.Handle(ARMRoute{Method: "POST", Path: deleted + "/purge", APIVersions: v, Action: actionDeletedVaultPurge, Handler: h.purge})
	a.Handle(ARMRoute{Method: "GET", Path: sub + "/providers/Microsoft.KeyVault/deletedVaults", APIVersions: v, Action: actionDeletedVaultRead, Handler: h.listDeleted})
	a.Handle(ARMRoute{Method: "POST", Path: sub + "/providers/Microsoft.KeyVault/checkNameAvailability", APIVersions: v, Action: actionCheckName, Handler: h.checkName})

	// Managed HSMs are not served: their lists are empty, as for a
	// subscription that has none (az keyvault list and list-deleted ask
	// for them beside the vaults).
	a.Handle(ARMRoute{Method: "GET", Path: sub + "/providers/Microsoft.KeyVault/managedHSMs", APIVersions: v, Handler: h.emptyList})
	a.Handle(ARMRoute{Method: "GET", Path: sub + "/resourceGroups/{resourceGroupName}/providers/Microsoft.KeyVault/managedHSMs", APIVersions: v, Action: actionManagedHSMRead, Handler: h.emptyList})
	a.Handle(ARMRoute{Method: "GET", Path: sub + "/providers/Microsoft.KeyVault/deletedManagedHSMs", APIVersions: v, Handler: h.emptyList})
}

// emptyList answers an ARM list with no items.
func (h *kvARM) emptyList(w http.ResponseWriter, r *ARMRequest) error {
	if rg := r.Param("resourceGroupName"); rg != "" {
		if _, err := h.a.s.cfg.RM.ResourceGroup(r.Context(), r.Param("subscriptionId"), rg); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, listBody[any]{Value: []any{}})
	return nil
}

// Wire shapes (armkeyvault v1.5.0 models).

type kvSKU struct {
	Family *string `json:"family"`
	Name   *string `json:"name"`
}

type kvPermissions struct {
	Keys         []string `json:"keys"`
	Secrets      []string `json:"secrets"`
	Certificates []string `json:"certificates"`
	Storage      []string `json:"storage"`
}

type kvAccessPolicy struct {
	TenantID      string        `json:"tenantId"`
	ObjectID      string        `json:"objectId"`
	ApplicationID string        `json:"applicationId,omitempty"`
	Permissions   kvPermissions `json:"permissions"`
}

type kvIPRule struct {
	Value string `json:"value"`
}

type kvVNetRule struct {
	ID                               string `json:"id"`
	IgnoreMissingVnetServiceEndpoint *bool  `json:"ignoreMissingVnetServiceEndpoint,omitempty"`
}

type kvNetworkACLs struct {
	Bypass              string       `json:"bypass,omitempty"`
	DefaultAction       string       `json:"defaultAction,omitempty"`
	IPRules             []kvIPRule   `json:"ipRules"`
	VirtualNetworkRules []kvVNetRule `json:"virtualNetworkRules"`
}

// kvPropsIn is the properties object of a PUT or PATCH.
type kvPropsIn struct {
	TenantID                     *string           `json:"tenantId"`
	SKU                          *kvSKU            `json:"sku"`
	AccessPolicies               *[]kvAccessPolicy `json:"accessPolicies"`
	EnabledForDeployment         *bool             `json:"enabledForDeployment"`
	EnabledForDiskEncryption     *bool             `json:"enabledForDiskEncryption"`
	EnabledForTemplateDeployment *bool             `json:"enabledForTemplateDeployment"`
	EnableSoftDelete             *bool             `json:"enableSoftDelete"`
	SoftDeleteRetentionInDays    *int              `json:"softDeleteRetentionInDays"`
	EnableRbacAuthorization      *bool             `json:"enableRbacAuthorization"`
	EnablePurgeProtection        *bool             `json:"enablePurgeProtection"`
	CreateMode                   *string           `json:"createMode"`
	PublicNetworkAccess          *string           `json:"publicNetworkAccess"`
	NetworkACLs                  *kvNetworkACLs    `json:"networkAcls"`
}

type kvVaultIn struct {
	Location   *string           `json:"location"`
	Tags       map[string]string `json:"tags"`
	Properties *kvPropsIn        `json:"properties"`
}

type kvPropsOut struct {
	TenantID                     string            `json:"tenantId"`
	SKU                          map[string]string `json:"sku"`
	AccessPolicies               []kvAccessPolicy  `json:"accessPolicies"`
	VaultURI                     string            `json:"vaultUri"`
	EnabledForDeployment         bool              `json:"enabledForDeployment"`
	EnabledForDiskEncryption     bool              `json:"enabledForDiskEncryption"`
	EnabledForTemplateDeployment bool              `json:"enabledForTemplateDeployment"`
	EnableSoftDelete             bool              `json:"enableSoftDelete"`
	SoftDeleteRetentionInDays    int               `json:"softDeleteRetentionInDays"`
	EnableRbacAuthorization      bool              `json:"enableRbacAuthorization"`
	EnablePurgeProtection        *bool             `json:"enablePurgeProtection,omitempty"`
	PublicNetworkAccess          string            `json:"publicNetworkAccess,omitempty"`
	NetworkACLs                  *kvNetworkACLs    `json:"networkAcls,omitempty"`
	ProvisioningState            string            `json:"provisioningState"`
}

type kvSystemData struct {
	CreatedBy      string `json:"createdBy,omitempty"`
	CreatedByType  string `json:"createdByType,omitempty"`
	CreatedAt      string `json:"createdAt"`
	LastModifiedAt string `json:"lastModifiedAt"`
}

type kvVaultOut struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags"`
	SystemData kvSystemData      `json:"systemData"`
	Properties kvPropsOut        `json:"properties"`
}

func armTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func toPolicyBodies(ps []keyvault.AccessPolicy) []kvAccessPolicy {
	out := make([]kvAccessPolicy, 0, len(ps))
	for _, p := range ps {
		out = append(out, kvAccessPolicy{TenantID: p.TenantID, ObjectID: p.ObjectID, ApplicationID: p.ApplicationID,
			Permissions: kvPermissions{Keys: nonNil(p.Keys), Secrets: nonNil(p.Secrets), Certificates: nonNil(p.Certificates), Storage: nonNil(p.Storage)}})
	}
	return out
}

func fromPolicyBodies(ps []kvAccessPolicy) []keyvault.AccessPolicy {
	out := make([]keyvault.AccessPolicy, 0, len(ps))
	for _, p := range ps {
		out = append(out, keyvault.AccessPolicy{TenantID: p.TenantID, ObjectID: p.ObjectID, ApplicationID: p.ApplicationID,
			Keys: p.Permissions.Keys, Secrets: p.Permissions.Secrets, Certificates: p.Permissions.Certificates, Storage: p.Permissions.Storage})
	}
	return out
}

func (h *kvARM) vaultBody(v *keyvault.Vault) kvVaultOut {
	b := kvVaultOut{ID: v.ID, Name: v.Name, Type: keyvault.VaultType, Location: v.Location, Tags: v.Tags}
	if b.Tags == nil {
		b.Tags = map[string]string{}
	}
	b.SystemData = kvSystemData{CreatedBy: v.CreatedBy, CreatedAt: armTime(v.CreatedAt), LastModifiedAt: armTime(v.UpdatedAt)}
	if v.CreatedBy != "" {
		b.SystemData.CreatedByType = "Application"
	}
	p := &b.Properties
	p.TenantID = v.TenantID
	p.SKU = map[string]string{"family": "A", "name": v.SKU}
	p.AccessPolicies = toPolicyBodies(v.AccessPolicies)
	p.VaultURI = h.kv.VaultURI(v.Name)
	p.EnabledForDeployment, p.EnabledForDiskEncryption, p.EnabledForTemplateDeployment = v.EnabledForDeployment, v.EnabledForDiskEncryption, v.EnabledForTemplateDeployment
	p.EnableSoftDelete, p.SoftDeleteRetentionInDays = true, v.SoftDeleteRetentionDays
	p.EnableRbacAuthorization = v.EnableRbacAuthorization
	// Azure leaves enablePurgeProtection out until it is turned on.
	if v.EnablePurgeProtection {
		t := true
		p.EnablePurgeProtection = &t
	}
	p.PublicNetworkAccess = v.PublicNetworkAccess
	if p.PublicNetworkAccess == "" {
		p.PublicNetworkAccess = "Enabled"
	}
	if n := v.NetworkACLs; n != nil {
		acl := &kvNetworkACLs{Bypass: n.Bypass, DefaultAction: n.DefaultAction, IPRules: []kvIPRule{}, VirtualNetworkRules: []kvVNetRule{}}
		for _, ip := range n.IPRules {
			acl.IPRules = append(acl.IPRules, kvIPRule{Value: ip})
		}
		for _, id := range n.VirtualNetworkRules {
			acl.VirtualNetworkRules = append(acl.VirtualNetworkRules, kvVNetRule{ID: id})
		}
		p.NetworkACLs = acl
	}
	p.ProvisioningState = "Succeeded"
	return b
}

// update turns a request body into a keyvault.VaultUpdate.
func toVaultUpdate(in kvVaultIn) keyvault.VaultUpdate {
	u := keyvault.VaultUpdate{Location: in.Location, Tags: in.Tags}
	p := in.Properties
	if p == nil {
		return u
	}
	u.TenantID = p.TenantID
	if p.SKU != nil {
		u.SKUFamily, u.SKU = p.SKU.Family, p.SKU.Name
	}
	if p.AccessPolicies != nil {
		ps := fromPolicyBodies(*p.AccessPolicies)
		u.AccessPolicies = &ps
	}
	u.EnabledForDeployment, u.EnabledForDiskEncryption, u.EnabledForTemplateDeployment = p.EnabledForDeployment, p.EnabledForDiskEncryption, p.EnabledForTemplateDeployment
	u.EnableSoftDelete, u.SoftDeleteRetentionDays = p.EnableSoftDelete, p.SoftDeleteRetentionInDays
	u.EnableRbacAuthorization, u.EnablePurgeProtection = p.EnableRbacAuthorization, p.EnablePurgeProtection
	u.PublicNetworkAccess = p.PublicNetworkAccess
	if p.CreateMode != nil {
		u.CreateMode = *p.CreateMode
	}
	if n := p.NetworkACLs; n != nil {
		acl := &keyvault.NetworkACLs{Bypass: n.Bypass, DefaultAction: n.DefaultAction}
		for _, ip := range n.IPRules {
			acl.IPRules = append(acl.IPRules, ip.Value)
		}
		for _, r := range n.VirtualNetworkRules {
			acl.VirtualNetworkRules = append(acl.VirtualNetworkRules, r.ID)
		}
		u.NetworkACLs = acl
	}
	return u
}

func (h *kvARM) put(w http.ResponseWriter, r *ARMRequest) error {
	var in kvVaultIn
	if err := decodeJSON(r.Request, &in); err != nil {
		return err
	}
	if in.Properties == nil {
		return custody.Errorf(custody.KindInvalid, "BadRequest",
			"The request body for vault '%s' has no properties; tenantId and sku are required.", r.Param("vaultName"))
	}
	v, created, err := h.kv.PutVault(r.Context(), r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("vaultName"), toVaultUpdate(in))
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, h.vaultBody(v))
	return nil
}

func (h *kvARM) patch(w http.ResponseWriter, r *ARMRequest) error {
	var in kvVaultIn
	if err := decodeJSON(r.Request, &in); err != nil {
		return err
	}
	u := toVaultUpdate(in)
	// A PATCH cannot move a vault; its createMode is checked and ignored.
	u.Location = nil
	v, err := h.kv.UpdateVault(r.Context(), r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("vaultName"), u)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, h.vaultBody(v))
	return nil
}

func (h *kvARM) get(w http.ResponseWriter, r *ARMRequest) error {
	v, err := h.kv.GetVault(r.Context(), r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("vaultName"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, h.vaultBody(v))
	return nil
}

// delete soft-deletes a vault: 200, or 204 when there was none.
func (h *kvARM) delete(w http.ResponseWriter, r *ARMRequest) error {
	found, err := h.kv.DeleteVault(r.Context(), r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("vaultName"))
	if err != nil {
		return err
	}
	if !found {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (h *kvARM) accessPolicies(w http.ResponseWriter, r *ARMRequest) error {
	var in struct {
		Properties *struct {
			AccessPolicies []kvAccessPolicy `json:"accessPolicies"`
		} `json:"properties"`
	}
	if err := decodeJSON(r.Request, &in); err != nil {
		return err
	}
	if in.Properties == nil {
		return custody.Errorf(custody.KindInvalid, "BadRequest",
			"The request body has no properties; send {\"properties\":{\"accessPolicies\":[...]}} to update the access policies of vault '%s'.", r.Param("vaultName"))
	}
	kind := strings.ToLower(r.Param("operationKind"))
	v, err := h.kv.UpdateAccessPolicies(r.Context(), r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("vaultName"),
		keyvault.AccessPolicyOp(kind), fromPolicyBodies(in.Properties.AccessPolicies))
	if err != nil {
		return err
	}
	body := map[string]any{
		"id": v.ID + "/accessPolicies/" + kind, "name": kind, "type": keyvault.VaultType + "/accessPolicies", "location": v.Location,
		"properties": map[string]any{"accessPolicies": toPolicyBodies(v.AccessPolicies)},
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

func parseTop(r *ARMRequest) (int, error) {
	s := r.URL.Query().Get("$top")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, custody.Errorf(custody.KindInvalid, "InvalidQueryParameterValue", "The $top value '%s' is not valid; use a positive whole number.", s)
	}
	return n, nil
}

// readable keeps the vaults the caller may read.
func (h *kvARM) readable(r *ARMRequest, vs []*keyvault.Vault) ([]*keyvault.Vault, error) {
	out := []*keyvault.Vault{}
	for _, v := range vs {
		ok, err := h.a.s.cfg.RM.HasRoleAt(r.Context(), r.Caller.ObjectID, v.ID, actionVaultRead, false)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, v)
		}
	}
	return out, nil
}

// list lists the vaults of a group or, without one, of the subscription.
func (h *kvARM) list(w http.ResponseWriter, r *ARMRequest) error {
	top, err := parseTop(r)
	if err != nil {
		return err
	}
	vs, err := h.kv.ListVaults(r.Context(), r.Param("subscriptionId"), r.Param("resourceGroupName"), 0)
	if err != nil {
		return err
	}
	if vs, err = h.readable(r, vs); err != nil {
		return err
	}
	if top > 0 && len(vs) > top {
		vs = vs[:top]
	}
	out := make([]kvVaultOut, 0, len(vs))
	for _, v := range vs {
		out = append(out, h.vaultBody(v))
	}
	writeJSON(w, http.StatusOK, listBody[kvVaultOut]{Value: out})
	return nil
}

var resourceTypeFilter = regexp.MustCompile(`(?i)^\s*resourceType\s+eq\s+'([^']+)'\s*$`)

// listResources is the subscription's generic resource list, as far as key
// vaults go: it answers $filter=resourceType eq 'Microsoft.KeyVault/vaults'.
func (h *kvARM) listResources(w http.ResponseWriter, r *ARMRequest) error {
	f := r.URL.Query().Get("$filter")
	m := resourceTypeFilter.FindStringSubmatch(f)
	if m == nil || !strings.EqualFold(m[1], keyvault.VaultType) {
		return custody.Errorf(custody.KindInvalid, "UnsupportedQuery",
			"The $filter '%s' is not supported by this server's resource list; use resourceType eq '%s'.", f, keyvault.VaultType)
	}
	top, err := parseTop(r)
	if err != nil {
		return err
	}
	vs, err := h.kv.ListVaults(r.Context(), r.Param("subscriptionId"), "", 0)
	if err != nil {
		return err
	}
	if vs, err = h.readable(r, vs); err != nil {
		return err
	}
	if top > 0 && len(vs) > top {
		vs = vs[:top]
	}
	out := make([]armResource, 0, len(vs))
	for _, v := range vs {
		out = append(out, armResource{ID: v.ID, Name: v.Name, Type: keyvault.VaultType, Location: v.Location, Tags: v.Tags})
	}
	writeJSON(w, http.StatusOK, listBody[armResource]{Value: out})
	return nil
}

type kvDeletedOut struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Properties struct {
		VaultID                string            `json:"vaultId"`
		Location               string            `json:"location"`
		DeletionDate           string            `json:"deletionDate"`
		ScheduledPurgeDate     string            `json:"scheduledPurgeDate"`
		Tags                   map[string]string `json:"tags"`
		PurgeProtectionEnabled bool              `json:"purgeProtectionEnabled"`
	} `json:"properties"`
}

func deletedBody(v *keyvault.Vault) kvDeletedOut {
	b := kvDeletedOut{
		ID:   rm.SubscriptionID(v.SubscriptionID) + "/providers/Microsoft.KeyVault/locations/" + v.Location + "/deletedVaults/" + v.Name,
		Name: v.Name, Type: keyvault.DeletedVaultType,
	}
	p := &b.Properties
	p.VaultID, p.Location, p.Tags, p.PurgeProtectionEnabled = v.ID, v.Location, v.Tags, v.EnablePurgeProtection
	if p.Tags == nil {
		p.Tags = map[string]string{}
	}
	if v.DeletedAt != nil {
		p.DeletionDate = armTime(*v.DeletedAt)
	}
	if v.ScheduledPurgeAt != nil {
		p.ScheduledPurgeDate = armTime(*v.ScheduledPurgeAt)
	}
	return b
}

func (h *kvARM) getDeleted(w http.ResponseWriter, r *ARMRequest) error {
	v, err := h.kv.DeletedVault(r.Context(), r.Param("subscriptionId"), r.Param("location"), r.Param("vaultName"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, deletedBody(v))
	return nil
}

func (h *kvARM) listDeleted(w http.ResponseWriter, r *ARMRequest) error {
	vs, err := h.kv.ListDeletedVaults(r.Context(), r.Param("subscriptionId"))
	if err != nil {
		return err
	}
	out := make([]kvDeletedOut, 0, len(vs))
	for _, v := range vs {
		out = append(out, deletedBody(v))
	}
	writeJSON(w, http.StatusOK, listBody[kvDeletedOut]{Value: out})
	return nil
}

// purge purges a deleted vault. The work is done before answering; the
// answer is ARM's long-running 202 with a Location that reports the outcome.
// A refusal (purge protection, no such deleted vault) is answered at once.
func (h *kvARM) purge(w http.ResponseWriter, r *ARMRequest) error {
	sub, loc, name := r.Param("subscriptionId"), r.Param("location"), r.Param("vaultName")
	v, err := h.kv.DeletedVault(r.Context(), sub, loc, name)
	if err != nil {
		return err
	}
	rmSvc := h.a.s.cfg.RM
	op, err := rmSvc.BeginOperation(r.Context(), deletedBody(v).ID, "purge")
	if err != nil {
		return err
	}
	perr := h.kv.PurgeDeletedVault(r.Context(), sub, loc, name)
	if err := rmSvc.FinishOperation(context.WithoutCancel(r.Context()), op, perr); err != nil {
		return err
	}
	if perr != nil {
		return perr
	}
	h.a.AcceptedOperation(w, op.ID, r.APIVersion, 0)
	return nil
}

func (h *kvARM) checkName(w http.ResponseWriter, r *ARMRequest) error {
	var in struct {
		Name *string `json:"name"`
		Type *string `json:"type"`
	}
	if err := decodeJSON(r.Request, &in); err != nil {
		return err
	}
	if in.Name == nil {
		return custody.Errorf(custody.KindInvalid, "BadRequest", "The property \"name\" is required: the vault name to check.")
	}
	if in.Type != nil && !strings.EqualFold(*in.Type, keyvault.VaultType) {
		return custody.Errorf(custody.KindInvalid, "BadRequest",
			"The property \"type\" must be \"%s\", not \"%s\".", keyvault.VaultType, *in.Type)
	}
	res, err := h.kv.CheckNameAvailability(r.Context(), *in.Name)
	if err != nil {
		return err
	}
	body := map[string]any{"nameAvailable": res.Available}
	if !res.Available {
		body["reason"], body["message"] = res.Reason, res.Message
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}
