package portal

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"custody"
	"custody/batch"
	"custody/identity"
	"custody/keyvault"
	"custody/rm"
)

// vault returns the live vault named name after checking action on it.
func (p *Portal) vault(ctx context.Context, s *session, name, action string) (*keyvault.Vault, error) {
	vs, err := p.cfg.KeyVault.ListVaults(ctx, p.sub(), "", 0)
	if err != nil {
		return nil, err
	}
	for _, v := range vs {
		if strings.EqualFold(v.Name, name) {
			if err := p.authorize(ctx, s, v.ID, action); err != nil {
				return nil, err
			}
			return v, nil
		}
	}
	return nil, custody.Errorf(custody.KindNotFound, "VaultNotFound", "There is no key vault named %q. Check the name, or create the vault.", name)
}

func vaultTabs(name, current string) []crumb {
	base := "/vaults/" + url.PathEscape(name)
	tabs := []crumb{{Label: "Overview", Href: base}, {Label: "Access policies", Href: base + "/access-policies"}, {Label: "Keys", Href: base + "/keys"}}
	for i := range tabs {
		tabs[i].Current = tabs[i].Label == current
	}
	return tabs
}

func vaultCrumbs(name string, last ...string) []crumb {
	c := []crumb{{Label: "Home", Href: "/"}, {Label: "Key vault " + name, Href: "/vaults/" + url.PathEscape(name)}}
	for i := 0; i+1 < len(last); i += 2 {
		c = append(c, crumb{Label: last[i], Href: last[i+1]})
	}
	c[len(c)-1].Href, c[len(c)-1].Current = "", true
	return c
}

type createVaultData struct {
	Groups  []string
	Regions [][2]string
}

func (p *Portal) createVaultPage(w http.ResponseWriter, r *http.Request, s *session) {
	f := url.Values{"location": {"westus2"}, "sku": {"standard"}, "retentionDays": {"90"}, "purgeProtection": {"on"}, "accessModel": {"policy"}}
	p.renderCreateVault(w, r, s, http.StatusOK, f, &page{})
}

func (p *Portal) renderCreateVault(w http.ResponseWriter, r *http.Request, s *session, status int, f url.Values, pg *page) {
	pg.Title, pg.Session, pg.Form = "Create a key vault", s, f
	pg.Crumbs = []crumb{{Label: "Home", Href: "/"}, {Label: "Create a key vault", Current: true}}
	pg.Data = createVaultData{Groups: p.groups(r.Context(), s), Regions: regions}
	p.render(w, r, status, "vault_create", pg)
}

func (p *Portal) createVault(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	f := r.PostForm
	name, rg, loc := strings.TrimSpace(f.Get("name")), strings.TrimSpace(f.Get("resourceGroup")), normalizeLocation(f.Get("location"))
	pg := &page{Errors: map[string]string{}}
	if rg == "" {
		pg.Errors["resourceGroup"] = "Choose a resource group, or type the name of a new one."
	}
	if loc == "" {
		pg.Errors["location"] = "Choose a region."
	}
	days, err := strconv.Atoi(strings.TrimSpace(f.Get("retentionDays")))
	if err != nil || days < keyvault.MinRetentionDays || days > keyvault.MaxRetentionDays {
		pg.Errors["retentionDays"] = "Days to retain deleted vaults must be a whole number from 7 to 90."
	}
	if res, err := p.cfg.KeyVault.CheckNameAvailability(ctx, name); err != nil {
		pg.setError(err, "name")
	} else if !res.Available {
		pg.Errors["name"] = res.Message
	}
	if len(pg.Errors) > 0 {
		p.renderCreateVault(w, r, s, http.StatusBadRequest, f, pg)
		return
	}
	fail := func(err error, field string) {
		pg := &page{}
		pg.setError(err, field)
		p.renderCreateVault(w, r, s, statusOf(err), f, pg)
	}
	if _, err := p.cfg.RM.ResourceGroup(ctx, p.sub(), rg); custody.IsNotFound(err) {
		if err := p.authorize(ctx, s, rm.GroupID(p.sub(), rg), actionGroupWrite); err != nil {
			fail(err, "")
			return
		}
		if _, err := p.cfg.RM.PutResourceGroup(ctx, &rm.ResourceGroup{SubscriptionID: p.sub(), Name: rg, Location: loc}); err != nil {
			fail(err, "resourceGroup")
			return
		}
	} else if err != nil {
		fail(err, "resourceGroup")
		return
	}
	g, err := p.cfg.RM.ResourceGroup(ctx, p.sub(), rg)
	if err != nil {
		fail(err, "resourceGroup")
		return
	}
	if err := p.authorize(ctx, s, rm.ResourceID(p.sub(), g.Name, keyvault.Namespace, "vaults", name), actionVaultWrite); err != nil {
		fail(err, "")
		return
	}
	tenant, family, sku, soft := p.cfg.Identity.TenantID, "A", f.Get("sku"), true
	if sku == "" {
		sku = "standard"
	}
	rbac := f.Get("accessModel") == "rbac"
	u := keyvault.VaultUpdate{Location: &loc, TenantID: &tenant, SKUFamily: &family, SKU: &sku,
		EnableSoftDelete: &soft, SoftDeleteRetentionDays: &days, EnableRbacAuthorization: &rbac}
	if f.Get("purgeProtection") == "on" {
		t := true
		u.EnablePurgeProtection = &t
	}
	if _, _, err := p.cfg.KeyVault.PutVault(ctx, p.sub(), g.Name, name, u); err != nil {
		fail(err, "")
		return
	}
	http.Redirect(w, r, "/vaults/"+url.PathEscape(name)+"?created=1", http.StatusSeeOther)
}

type vaultData struct {
	Vault *keyvault.Vault
	URI   string
}

func (p *Portal) vaultOverview(w http.ResponseWriter, r *http.Request, s *session) {
	v, err := p.vault(r.Context(), s, r.PathValue("vault"), actionVaultRead)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	pg := &page{Title: v.Name, Session: s, Tabs: vaultTabs(v.Name, "Overview"), Crumbs: vaultCrumbs(v.Name),
		Data: vaultData{Vault: v, URI: p.cfg.KeyVault.VaultURI(v.Name)}}
	if r.URL.Query().Get("created") != "" {
		pg.Notice = "Your deployment is complete: key vault " + v.Name + " was created."
	}
	if r.URL.Query().Get("recovered") != "" {
		pg.Notice = "Key vault " + v.Name + " was recovered with its keys and access policies."
	}
	p.render(w, r, http.StatusOK, "vault", pg)
}

// permissionGroup is one group of key permission checkboxes, with the
// Azure portal's labels.
type permissionGroup struct {
	Name  string
	Perms [][2]string // value, label
}

var keyPermissionGroups = []permissionGroup{
	{"Key Management Operations", [][2]string{{"get", "Get"}, {"list", "List"}, {"update", "Update"}, {"create", "Create"},
		{"import", "Import"}, {"delete", "Delete"}, {"recover", "Recover"}, {"backup", "Backup"}, {"restore", "Restore"}}},
	{"Cryptographic Operations", [][2]string{{"decrypt", "Decrypt"}, {"encrypt", "Encrypt"}, {"unwrapKey", "Unwrap Key"},
		{"wrapKey", "Wrap Key"}, {"verify", "Verify"}, {"sign", "Sign"}}},
	{"Privileged Key Operations", [][2]string{{"purge", "Purge"}, {"release", "Release"}}},
	{"Rotation Policy Operations", [][2]string{{"rotate", "Rotate"}, {"getrotationpolicy", "Get Rotation Policy"},
		{"setrotationpolicy", "Set Rotation Policy"}}},
}

type policyRow struct {
	keyvault.AccessPolicy
	// Who names the principal when Custody knows it (a batch account's
	// identity, a service principal).
	Who string
}

type policiesData struct {
	Vault  *keyvault.Vault
	Rows   []policyRow
	Groups []permissionGroup
}

func (p *Portal) accessPoliciesPage(w http.ResponseWriter, r *http.Request, s *session) {
	v, err := p.vault(r.Context(), s, r.PathValue("vault"), actionVaultRead)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	pg := &page{}
	switch r.URL.Query().Get("done") {
	case "added":
		pg.Notice = "The access policy was saved."
	case "removed":
		pg.Notice = "The access policy was removed."
	}
	p.renderPolicies(w, r, s, http.StatusOK, v, url.Values{}, pg)
}

func (p *Portal) renderPolicies(w http.ResponseWriter, r *http.Request, s *session, status int, v *keyvault.Vault, f url.Values, pg *page) {
	pg.Title, pg.Session, pg.Form = "Access policies: "+v.Name, s, f
	pg.Tabs, pg.Crumbs = vaultTabs(v.Name, "Access policies"), vaultCrumbs(v.Name, "Access policies", "")
	d := policiesData{Vault: v, Groups: keyPermissionGroups}
	names := p.principalNames(r.Context())
	for _, ap := range v.AccessPolicies {
		d.Rows = append(d.Rows, policyRow{AccessPolicy: ap, Who: p.principalName(r.Context(), names, ap.ObjectID)})
	}
	pg.Data = d
	p.render(w, r, status, "access_policies", pg)
}

// principalNames names the batch accounts' identities by principal id.
func (p *Portal) principalNames(ctx context.Context) map[string]string {
	out := map[string]string{}
	as, err := p.cfg.Batch.Accounts.ListAccounts(ctx, p.sub(), "")
	if err != nil {
		return out
	}
	for _, a := range as {
		if a.Identity.PrincipalID != "" {
			out[strings.ToLower(a.Identity.PrincipalID)] = "Batch account " + a.Name + " (system-assigned identity)"
		}
		for rid, u := range a.Identity.UserAssigned {
			if u.PrincipalID != "" {
				out[strings.ToLower(u.PrincipalID)] = "User-assigned identity " + lastSegment(rid)
			}
		}
	}
	return out
}

// principalName names the principal oid when Custody knows it: a Batch
// account's identity (names from principalNames) or a service principal.
func (p *Portal) principalName(ctx context.Context, names map[string]string, oid string) string {
	if who := names[strings.ToLower(oid)]; who != "" {
		return who
	}
	if pr, err := p.cfg.Identity.Store.Principal(ctx, oid); err == nil && pr.Kind == identity.KindServicePrincipal {
		return "Service principal " + pr.DisplayName
	}
	return ""
}

// policyPrincipalName names the principal of one access policy.
func (p *Portal) policyPrincipalName(ctx context.Context, oid string) string {
	return p.principalName(ctx, p.principalNames(ctx), oid)
}

// resolvePrincipal turns "Select principal" input into an object id: a
// principal id as is, or a batch account name (whose identity the principal
// may read) as that account's identity.
func (p *Portal) resolvePrincipal(ctx context.Context, s *session, in string) (string, error) {
	in = strings.TrimSpace(in)
	if in == "" {
		return "", custody.Errorf(custody.KindInvalid, "PrincipalRequired", "Enter a principal id (object id) or the name of a Batch account.")
	}
	if isGUID(in) {
		return strings.ToLower(in), nil
	}
	a, err := p.account(ctx, s, strings.ToLower(in), actionBatchRead)
	if custody.IsNotFound(err) {
		return "", custody.Errorf(custody.KindInvalid, "PrincipalNotFound", "%q is neither a principal id (a GUID) nor the name of a Batch account on this server.", in)
	}
	if err != nil {
		return "", err
	}
	switch {
	case a.Identity.Type == batch.IdentitySystemAssigned && a.Identity.PrincipalID != "":
		return a.Identity.PrincipalID, nil
	case len(a.Identity.UserAssigned) == 1:
		for _, u := range a.Identity.UserAssigned {
			return u.PrincipalID, nil
		}
	case len(a.Identity.UserAssigned) > 1:
		return "", custody.Errorf(custody.KindInvalid, "PrincipalAmbiguous", "Batch account %s has several user-assigned identities; enter the principal id of the one to grant.", a.Name)
	}
	return "", custody.Errorf(custody.KindInvalid, "AccountHasNoIdentity", "Batch account %s has no managed identity, so a key vault cannot grant it access. Give it a system-assigned identity first.", a.Name)
}

func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}

func (p *Portal) addAccessPolicy(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	f := r.PostForm
	v, err := p.vault(ctx, s, r.PathValue("vault"), actionVaultRead)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	pg := &page{}
	perms := f["keys"]
	if len(perms) == 0 {
		pg.setError(custody.Errorf(custody.KindInvalid, "PermissionsRequired", "Select at least one key permission (for a Batch account's customer-managed key: Get, Wrap Key and Unwrap Key)."), "keys")
	}
	oid, err := p.resolvePrincipal(ctx, s, f.Get("principal"))
	if err != nil {
		pg.setError(err, "principal")
	}
	var actErr error
	if pg.Errors == nil {
		actErr = p.authorize(ctx, s, v.ID, actionPolicyWrite)
		if actErr == nil {
			_, actErr = p.cfg.KeyVault.UpdateAccessPolicies(ctx, p.sub(), v.ResourceGroup, v.Name, keyvault.AccessPolicyAdd,
				[]keyvault.AccessPolicy{{TenantID: p.cfg.Identity.TenantID, ObjectID: oid, Keys: perms, Secrets: []string{}, Certificates: []string{}, Storage: []string{}}})
		}
		pg.setError(actErr, "")
	}
	if pg.Errors != nil || actErr != nil {
		status := http.StatusBadRequest
		if pg.Errors == nil {
			status = statusOf(actErr)
		}
		p.renderPolicies(w, r, s, status, v, f, pg)
		return
	}
	http.Redirect(w, r, "/vaults/"+url.PathEscape(v.Name)+"/access-policies?done=added", http.StatusSeeOther)
}

func (p *Portal) removeAccessPolicy(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	f := r.PostForm
	v, err := p.vault(ctx, s, r.PathValue("vault"), actionVaultRead)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	err = p.authorize(ctx, s, v.ID, actionPolicyWrite)
	if err == nil && !confirmed(r) {
		var found *keyvault.AccessPolicy
		for i, ap := range v.AccessPolicies {
			if strings.EqualFold(ap.ObjectID, f.Get("objectId")) && strings.EqualFold(ap.ApplicationID, f.Get("applicationId")) {
				found = &v.AccessPolicies[i]
				break
			}
		}
		if found == nil {
			err = custody.Errorf(custody.KindNotFound, "AccessPolicyNotFound", "Key vault %s has no access policy for principal %q; it may have been removed already.", v.Name, f.Get("objectId"))
		} else {
			p.confirmRemovePolicy(w, r, s, v, *found, p.policyPrincipalName(ctx, found.ObjectID))
			return
		}
	}
	if err == nil {
		_, err = p.cfg.KeyVault.UpdateAccessPolicies(ctx, p.sub(), v.ResourceGroup, v.Name, keyvault.AccessPolicyRemove,
			[]keyvault.AccessPolicy{{TenantID: p.cfg.Identity.TenantID, ObjectID: f.Get("objectId"), ApplicationID: f.Get("applicationId")}})
	}
	if err != nil {
		pg := &page{}
		pg.setError(err, "")
		p.renderPolicies(w, r, s, statusOf(err), v, url.Values{}, pg)
		return
	}
	http.Redirect(w, r, "/vaults/"+url.PathEscape(v.Name)+"/access-policies?done=removed", http.StatusSeeOther)
}
