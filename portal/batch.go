package portal

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"custody"
	"custody/batch"
	"custody/identity"
	"custody/keyvault"
	"custody/rm"
)

// RBAC actions, the same names the resource manager checks for the API.
const (
	actionBatchRead   = "Microsoft.Batch/batchAccounts/read"
	actionBatchWrite  = "Microsoft.Batch/batchAccounts/write"
	actionBatchDelete = "Microsoft.Batch/batchAccounts/delete"
	// actionBatchReencrypt re-encrypts an account's data under a new data
	// key (a Custody extension, as in the resource manager).
	actionBatchReencrypt = "Microsoft.Batch/batchAccounts/reencrypt/action"
	actionGroupRead      = "Microsoft.Resources/subscriptions/resourceGroups/read"
	actionGroupWrite     = "Microsoft.Resources/subscriptions/resourceGroups/write"
	actionVaultRead      = "Microsoft.KeyVault/vaults/read"
	actionVaultWrite     = "Microsoft.KeyVault/vaults/write"
	actionVaultDelete    = "Microsoft.KeyVault/vaults/delete"
	actionPolicyWrite    = "Microsoft.KeyVault/vaults/accessPolicies/write"
)

// Regions offered by the create forms: display name and ARM name.
var regions = [][2]string{
	{"West US 2", "westus2"}, {"East US", "eastus"}, {"East US 2", "eastus2"}, {"West US", "westus"},
	{"Central US", "centralus"}, {"North Europe", "northeurope"}, {"West Europe", "westeurope"},
	{"UK South", "uksouth"}, {"Southeast Asia", "southeastasia"}, {"Japan East", "japaneast"},
	{"Australia East", "australiaeast"},
}

func normalizeLocation(l string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(l), " ", ""))
}

func (p *Portal) sub() string { return p.cfg.RM.SubscriptionID }

// account returns the named account after checking action on it.
func (p *Portal) account(ctx context.Context, s *session, name, action string) (*batch.Account, error) {
	a, err := p.cfg.Batch.Account(ctx, name)
	if custody.IsNotFound(err) {
		return nil, custody.Errorf(custody.KindNotFound, "ResourceNotFound", "There is no Batch account named %q. Check the name, or create the account.", name)
	}
	if err != nil {
		return nil, err
	}
	if err := p.authorize(ctx, s, a.ID, action); err != nil {
		return nil, err
	}
	return a, nil
}

func accountTabs(name, current string) []crumb {
	base := "/batch/" + url.PathEscape(name)
	tabs := []crumb{{Label: "Overview", Href: base}, {Label: "Encryption", Href: base + "/encryption"},
		{Label: "Pools", Href: base + "/pools"}, {Label: "Jobs", Href: base + "/jobs"}}
	for i := range tabs {
		tabs[i].Current = tabs[i].Label == current
	}
	return tabs
}

type homeData struct {
	Accounts []*batch.Account
	Vaults   []*keyvault.Vault
}

func (p *Portal) home(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	var d homeData
	as, err := p.cfg.Batch.Accounts.ListAccounts(ctx, p.sub(), "")
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	sort.Slice(as, func(i, j int) bool { return as[i].Name < as[j].Name })
	for _, a := range as {
		if ok, err := p.can(ctx, s, a.ID, actionBatchRead); err != nil {
			p.fail(w, r, s, err)
			return
		} else if ok {
			d.Accounts = append(d.Accounts, a)
		}
	}
	vs, err := p.cfg.KeyVault.ListVaults(ctx, p.sub(), "", 0)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].Name < vs[j].Name })
	for _, v := range vs {
		if ok, err := p.can(ctx, s, v.ID, actionVaultRead); err != nil {
			p.fail(w, r, s, err)
			return
		} else if ok {
			d.Vaults = append(d.Vaults, v)
		}
	}
	pg := &page{Title: "Home", Session: s, Data: d}
	pg.Notice, pg.NoticeLink = deletedNotice(r.URL.Query())
	p.render(w, r, http.StatusOK, "home", pg)
}

// groups lists the resource groups the principal may read.
func (p *Portal) groups(ctx context.Context, s *session) []string {
	gs, err := p.cfg.RM.Store.ListResourceGroups(ctx, p.sub())
	if err != nil {
		return nil
	}
	out := []string{}
	for _, g := range gs {
		if ok, _ := p.can(ctx, s, g.ID, actionGroupRead); ok {
			out = append(out, g.Name)
		}
	}
	sort.Strings(out)
	return out
}

type createAccountData struct {
	Tab     string
	Groups  []string
	Regions [][2]string
	// Identities are the user-assigned identities the principal may read,
	// offered on the Advanced tab.
	Identities []*identity.UserAssignedIdentity
	// IdentitiesErr says why the identities could not be listed.
	IdentitiesErr string
	// Picked is the user-assigned identity chosen, if it is one of
	// Identities (for the review tab).
	Picked *identity.UserAssignedIdentity
	// NewGroup is set on the review tab when the group will be created.
	NewGroup bool
}

func (p *Portal) createAccountPage(w http.ResponseWriter, r *http.Request, s *session) {
	f := url.Values{"identityType": {batch.IdentitySystemAssigned}, "encryption": {batch.KeySourceBatch}, "location": {"westus2"}}
	p.renderCreateAccount(w, r, s, http.StatusOK, "basics", f, nil)
}

func (p *Portal) renderCreateAccount(w http.ResponseWriter, r *http.Request, s *session, status int, tab string, f url.Values, pg *page) {
	if pg == nil {
		pg = &page{}
	}
	pg.Title, pg.Session, pg.Form = "Create a Batch account", s, f
	pg.Crumbs = []crumb{{Label: "Home", Href: "/"}, {Label: "Create a Batch account", Current: true}}
	d := createAccountData{Tab: tab, Groups: p.groups(r.Context(), s), Regions: regions}
	if tab == "advanced" || tab == "review" {
		us, err := p.userAssignedIdentities(r.Context(), s)
		if err != nil {
			d.IdentitiesErr = custody.ErrorMessage(err)
		}
		d.Identities = us
		rid := userAssignedFromForm(f)
		for _, u := range us {
			if strings.EqualFold(u.ID, rid) {
				d.Picked = u
			}
		}
	}
	if tab == "review" {
		if _, err := p.cfg.RM.ResourceGroup(r.Context(), p.sub(), f.Get("resourceGroup")); custody.IsNotFound(err) {
			d.NewGroup = true
		}
	}
	pg.Data = d
	p.render(w, r, status, "account_create", pg)
}

// userAssignedIdentities lists the subscription's user-assigned identities
// the principal may assign (Managed Identity Operator, Contributor, Owner),
// sorted by resource group and name: the identities it could attach.
func (p *Portal) userAssignedIdentities(ctx context.Context, s *session) ([]*identity.UserAssignedIdentity, error) {
	us, err := p.cfg.Identity.Store.ListUserAssignedIdentities(ctx, p.sub(), "")
	if err != nil {
		return nil, err
	}
	out := []*identity.UserAssignedIdentity{}
	for _, u := range us {
		ok, err := p.can(ctx, s, u.ID, rm.ActionAssignIdentity)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, u)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if a, b := strings.ToLower(out[i].ResourceGroup), strings.ToLower(out[j].ResourceGroup); a != b {
			return a < b
		}
		return strings.ToLower(out[i].Name) < strings.ToLower(out[j].Name)
	})
	return out, nil
}

// userAssignedFromForm is the user-assigned identity of the Advanced tab:
// the one picked from the list or, when none is picked, the pasted
// resource id.
func userAssignedFromForm(f url.Values) string {
	if rid := strings.TrimSpace(f.Get("userAssignedId")); rid != "" {
		return rid
	}
	return strings.TrimSpace(f.Get("userAssignedIdOther"))
}

// checkBasics validates the Basics tab: errors by field.
func (p *Portal) checkBasics(ctx context.Context, f url.Values) map[string]string {
	errs := map[string]string{}
	if err := batch.ValidateName(f.Get("name")); err != nil {
		errs["name"] = custody.ErrorMessage(err)
	} else if _, err := p.cfg.Batch.Account(ctx, f.Get("name")); err == nil {
		errs["name"] = "The Batch account name " + f.Get("name") + " is already taken (account names are host names and unique on this server). Choose another name."
	}
	if strings.TrimSpace(f.Get("resourceGroup")) == "" {
		errs["resourceGroup"] = "Choose a resource group, or type the name of a new one."
	}
	if normalizeLocation(f.Get("location")) == "" {
		errs["location"] = "Choose a location."
	}
	return errs
}

// identityFromForm reads the Advanced tab's identity choice.
func identityFromForm(f url.Values) (batch.AccountIdentity, error) {
	id := batch.AccountIdentity{Type: f.Get("identityType")}
	switch id.Type {
	case batch.IdentityNone, batch.IdentitySystemAssigned:
	case batch.IdentityUserAssigned:
		rid := userAssignedFromForm(f)
		if rid == "" {
			return id, &custody.Error{Kind: custody.KindInvalid, Code: "InvalidIdentity", Target: "userAssignedId",
				Message: "Select a user-assigned identity, or paste the resource id of one: /subscriptions/{id}/resourceGroups/{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}."}
		}
		canon, ok := rm.UserAssignedIdentityID(rid)
		if !ok {
			return id, &custody.Error{Kind: custody.KindInvalid, Code: "InvalidIdentity", Target: "userAssignedId",
				Message: "Enter the resource id of a user-assigned identity: /subscriptions/{id}/resourceGroups/{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}."}
		}
		id.UserAssigned = map[string]batch.UserAssignedIdentity{canon: {}}
	default:
		return id, &custody.Error{Kind: custody.KindInvalid, Code: "InvalidIdentityType", Target: "identityType",
			Message: "Choose an identity type: None, System assigned or User assigned."}
	}
	return id, nil
}

func encryptionFromForm(f url.Values) (batch.Encryption, error) {
	switch f.Get("encryption") {
	case batch.KeySourceBatch, "":
		return batch.Encryption{KeySource: batch.KeySourceBatch}, nil
	case batch.KeySourceKeyVault:
		kid := strings.TrimSpace(f.Get("keyIdentifier"))
		if kid == "" {
			return batch.Encryption{}, &custody.Error{Kind: custody.KindInvalid, Code: "KeyIdentifierRequired", Target: "keyIdentifier",
				Message: "Enter the key identifier of the customer-managed key (https://{vault}.vault.{domain}/keys/{name}/{version})."}
		}
		return batch.Encryption{KeySource: batch.KeySourceKeyVault, KeyIdentifier: kid}, nil
	}
	return batch.Encryption{}, &custody.Error{Kind: custody.KindInvalid, Code: "InvalidKeySource", Target: "encryption",
		Message: "Choose Microsoft managed key or Customer managed key."}
}

func (p *Portal) createAccount(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	f := r.PostForm
	tab := f.Get("go")
	switch tab {
	case "basics", "advanced":
		p.renderCreateAccount(w, r, s, http.StatusOK, tab, f, nil)
		return
	case "review", "create":
	default:
		tab = "basics"
		p.renderCreateAccount(w, r, s, http.StatusOK, tab, f, nil)
		return
	}
	pg := &page{}
	if errs := p.checkBasics(ctx, f); len(errs) > 0 {
		pg.Errors = errs
		pg.Error = "Some fields on the Basics tab need attention."
		p.renderCreateAccount(w, r, s, http.StatusBadRequest, "basics", f, pg)
		return
	}
	ident, err := identityFromForm(f)
	if err == nil {
		_, err = encryptionFromForm(f)
	}
	if err != nil {
		var ce *custody.Error
		field := "encryption"
		if errors.As(err, &ce) && ce.Target != "" {
			field = ce.Target
		}
		pg.setError(err, field)
		pg.Error = "Some fields on the Advanced tab need attention."
		p.renderCreateAccount(w, r, s, http.StatusBadRequest, "advanced", f, pg)
		return
	}
	if tab == "review" {
		p.renderCreateAccount(w, r, s, http.StatusOK, "review", f, nil)
		return
	}
	enc, _ := encryptionFromForm(f)
	name, rg, loc := f.Get("name"), strings.TrimSpace(f.Get("resourceGroup")), normalizeLocation(f.Get("location"))
	fail := func(err error) {
		pg := &page{}
		pg.setError(err, "")
		p.renderCreateAccount(w, r, s, statusOf(err), "review", f, pg)
	}
	g, err := p.cfg.RM.ResourceGroup(ctx, p.sub(), rg)
	if custody.IsNotFound(err) {
		if err := p.authorize(ctx, s, rm.GroupID(p.sub(), rg), actionGroupWrite); err != nil {
			fail(err)
			return
		}
		g = &rm.ResourceGroup{SubscriptionID: p.sub(), Name: rg, Location: loc}
		if _, err := p.cfg.RM.PutResourceGroup(ctx, g); err != nil {
			fail(err)
			return
		}
	} else if err != nil {
		fail(err)
		return
	}
	id := rm.ResourceID(p.sub(), g.Name, "Microsoft.Batch", "batchAccounts", name)
	if err := p.authorize(ctx, s, id, actionBatchWrite); err != nil {
		fail(err)
		return
	}
	if len(ident.UserAssigned) > 0 {
		ids := make([]string, 0, len(ident.UserAssigned))
		for rid := range ident.UserAssigned {
			ids = append(ids, rid)
		}
		sort.Strings(ids)
		if err := p.cfg.RM.AuthorizeAssign(ctx, s.ObjectID, actionBatchWrite, id, ids); err != nil {
			fail(err)
			return
		}
	}
	a := &batch.Account{ID: id, SubscriptionID: p.sub(), ResourceGroup: g.Name, Name: name, Location: loc,
		Identity: ident, Encryption: enc, PoolAllocationMode: "BatchService", PublicNetworkAccess: "Enabled"}
	if _, err := p.cfg.Batch.CreateAccount(ctx, a); err != nil {
		fail(err)
		return
	}
	http.Redirect(w, r, "/batch/"+url.PathEscape(name)+"?created=1", http.StatusSeeOther)
}

type accountData struct {
	Account  *batch.Account
	Endpoint string
	Locked   bool
	// KeyInUse is the key (version) that wraps the account's data key now.
	KeyInUse string
	Customer bool
	// Reencryption describes the account's re-encryption, if it had one.
	Reencryption *reencryptionView
}

// reencryptionView is the re-encryption card of the account page.
type reencryptionView struct {
	// Running is true while it is in progress (paused included): the card
	// polls for progress and offers no button.
	Running bool
	Status  string // InProgress, Paused, Succeeded
	Done    int64
	Total   int64
	Percent int64
	Start   time.Time
	ETA     time.Time
	End     time.Time
	Error   string
}

func (p *Portal) accountOverview(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("account")
	a, err := p.account(r.Context(), s, name, actionBatchRead)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	pg := &page{Title: a.Name, Session: s, Tabs: accountTabs(a.Name, "Overview"),
		Crumbs: []crumb{{Label: "Home", Href: "/"}, {Label: "Batch account " + a.Name, Current: true}}}
	if r.URL.Query().Get("created") != "" {
		pg.Notice = "Your deployment is complete: Batch account " + a.Name + " was created."
	}
	if r.URL.Query().Get("reencrypt") != "" {
		pg.Notice = "The re-encryption of Batch account " + a.Name + "'s data has started; its progress is shown below."
	}
	pg.Data = p.accountData(p.withKnownIdentities(r.Context(), s, a))
	p.render(w, r, http.StatusOK, "account", pg)
}

// withKnownIdentities returns a copy of a in which the principal and client
// ids of a user-assigned identity are kept only if the principal may read or
// assign that identity, as the resource manager shows them.
func (p *Portal) withKnownIdentities(ctx context.Context, s *session, a *batch.Account) *batch.Account {
	if len(a.Identity.UserAssigned) == 0 {
		return a
	}
	c := *a
	c.Identity.UserAssigned = map[string]batch.UserAssignedIdentity{}
	for rid, u := range a.Identity.UserAssigned {
		read, err := p.can(ctx, s, rid, "Microsoft.ManagedIdentity/userAssignedIdentities/read")
		if err == nil && !read {
			read, err = p.can(ctx, s, rid, rm.ActionAssignIdentity)
		}
		if err != nil || !read {
			u.PrincipalID, u.ClientID = "", ""
		}
		c.Identity.UserAssigned[rid] = u
	}
	return &c
}

func (p *Portal) accountData(a *batch.Account) accountData {
	d := accountData{Account: a, Endpoint: p.cfg.Batch.AccountEndpoint(a.Name), Locked: a.Key.State == batch.KeyInaccessible,
		Customer: a.Encryption.KeySource == batch.KeySourceKeyVault}
	d.KeyInUse = a.Key.Wrapped.KeyID
	if r := a.Reencryption; r != nil {
		v := &reencryptionView{Running: r.Status == batch.ReencryptionInProgress, Status: r.Status, Done: r.RecordsDone, Total: r.RecordsTotal,
			Percent: 100, Start: r.StartTime, End: r.EndTime, Error: r.Error}
		if v.Running {
			v.Percent, v.ETA = 0, r.EstimatedEnd(time.Now())
			if r.RecordsTotal > 0 {
				v.Percent = min(99, r.RecordsDone*100/r.RecordsTotal)
			}
			if d.Locked {
				v.Status, v.ETA = "Paused", time.Time{}
			}
		}
		d.Reencryption = v
	}
	return d
}

// reencrypt starts the re-encryption of the account's data and returns to
// the account page, whose card then shows the progress.
func (p *Portal) reencrypt(w http.ResponseWriter, r *http.Request, s *session) {
	a, err := p.account(r.Context(), s, r.PathValue("account"), actionBatchReencrypt)
	if err == nil {
		_, err = p.cfg.Batch.Reencrypt(r.Context(), a.Name)
	}
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/batch/"+url.PathEscape(a.Name)+"?reencrypt=1", http.StatusSeeOther)
}

// reencryptionCard answers the re-encryption card alone, which polls it
// (htmx) while the re-encryption runs.
func (p *Portal) reencryptionCard(w http.ResponseWriter, r *http.Request, s *session) {
	a, err := p.account(r.Context(), s, r.PathValue("account"), actionBatchRead)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	p.renderFragment(w, r, "account", "reencryption", &page{Session: s, Data: p.accountData(a)})
}

func (p *Portal) deleteAccount(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("account")
	a, err := p.account(r.Context(), s, name, actionBatchDelete)
	if err == nil && !confirmed(r) {
		p.confirmDeleteAccount(w, r, s, a)
		return
	}
	if err == nil {
		err = p.cfg.Batch.Delete(r.Context(), a.Name)
	}
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/?deleted=account&name="+url.QueryEscape(a.Name), http.StatusSeeOther)
}
