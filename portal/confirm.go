package portal

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"custody/batch"
	"custody/keyvault"
)

// Deleting asks first. The delete buttons post to the delete action
// without "confirm"; the answer is a confirmation page that names what
// would be deleted and what deleting it does, with a form that posts the
// same action again with confirm=yes (and the session's CSRF token, as
// every form does) and a Cancel button back to the resource. Only that
// second POST deletes.

// confirmData is the confirmation page.
type confirmData struct {
	// Heading names the thing to delete.
	Heading string
	// Intro leads the list of effects; Button labels the button that
	// does it. Empty, they speak of deleting.
	Intro, Button string
	// Effects say what deleting it does, one sentence each.
	Effects []string
	// Action is where the Delete button posts; Hidden are the fields it
	// carries besides csrf and confirm.
	Action string
	Hidden [][2]string
	// Cancel is the page the Cancel button goes back to.
	Cancel string
}

// confirmed reports whether the POST is the confirmed one.
func confirmed(r *http.Request) bool { return r.PostForm.Get("confirm") == "yes" }

func (p *Portal) renderConfirm(w http.ResponseWriter, r *http.Request, pg *page, d confirmData) {
	if d.Intro == "" {
		d.Intro = "Deleting it does this:"
	}
	if d.Button == "" {
		d.Button = "Delete"
	}
	pg.Data = d
	p.render(w, r, http.StatusOK, "confirm", pg)
}

// retentionText says how long a soft-deleted object can be recovered.
func retentionText(v *keyvault.Vault, now time.Time) string {
	until := now.Add(time.Duration(v.SoftDeleteRetentionDays) * 24 * time.Hour).UTC().Format("2006-01-02 15:04 UTC")
	return fmt.Sprintf("%d days, until about %s", v.SoftDeleteRetentionDays, until)
}

func purgeText(v *keyvault.Vault, what string) string {
	if v.EnablePurgeProtection {
		return "Purge protection is on: nobody can purge " + what + " before the retention period ends."
	}
	return "Purge protection is off: someone with the Purge permission can purge " + what + " earlier, and then it is gone for good."
}

// accountsUsing names the Batch accounts the principal may read whose
// customer-managed key is in vault (and is key, unless key is empty) and,
// unless principalID is empty, whose identity with that principal id
// reaches it.
func (p *Portal) accountsUsing(ctx context.Context, s *session, vault, key, principalID string) []string {
	as, err := p.cfg.Batch.Accounts.ListAccounts(ctx, p.sub(), "")
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range as {
		if a.Encryption.KeySource != batch.KeySourceKeyVault {
			continue
		}
		u, err := url.Parse(a.Encryption.KeyIdentifier)
		if err != nil || !strings.HasPrefix(strings.ToLower(u.Hostname()), strings.ToLower(vault)+".vault.") {
			continue
		}
		if key != "" {
			parts := strings.Split(strings.Trim(u.Path, "/"), "/")
			if len(parts) < 2 || parts[0] != "keys" || !strings.EqualFold(parts[1], key) {
				continue
			}
		}
		if principalID != "" && !accountHasPrincipal(a, principalID) {
			continue
		}
		if ok, _ := p.can(ctx, s, a.ID, actionBatchRead); ok {
			out = append(out, a.Name)
		}
	}
	sort.Strings(out)
	return out
}

func accountHasPrincipal(a *batch.Account, principalID string) bool {
	if strings.EqualFold(a.Identity.PrincipalID, principalID) {
		return true
	}
	for _, u := range a.Identity.UserAssigned {
		if strings.EqualFold(u.PrincipalID, principalID) {
			return true
		}
	}
	return false
}

func lockText(accounts []string, cause string) string {
	if len(accounts) == 0 {
		return ""
	}
	noun := "Batch account " + accounts[0] + " uses"
	if len(accounts) > 1 {
		noun = "Batch accounts " + strings.Join(accounts, ", ") + " use"
	}
	return noun + " " + cause + " for customer-managed keys: it loses access to its key and becomes locked (nodes unusable, running tasks stopped, jobs and tasks unreadable) until access is back."
}

func appendIf(list []string, s string) []string {
	if s == "" {
		return list
	}
	return append(list, s)
}

// confirmDeleteAccount is the confirmation page of deleting account a.
func (p *Portal) confirmDeleteAccount(w http.ResponseWriter, r *http.Request, s *session, a *batch.Account) {
	base := "/batch/" + url.PathEscape(a.Name)
	pg := &page{Title: "Delete Batch account " + a.Name, Session: s, Tabs: accountTabs(a.Name, "Overview"),
		Crumbs: []crumb{{Label: "Home", Href: "/"}, {Label: "Batch account " + a.Name, Href: base}, {Label: "Delete", Current: true}}}
	d := confirmData{Heading: "Delete Batch account " + a.Name + "?", Action: base + "/delete", Cancel: base}
	d.Effects = append(d.Effects,
		"All of the account's jobs, tasks (with their output) and pools (with their nodes) are deleted, and so are its certificates.",
		"A Batch account has no soft delete: the account cannot be recovered, and its name becomes free for anyone to take.")
	if a.Identity.Type == batch.IdentitySystemAssigned && a.Identity.PrincipalID != "" {
		d.Effects = append(d.Effects, "Its system-assigned identity (principal id "+a.Identity.PrincipalID+") is deleted; access policies and roles granted to it no longer let anyone in.")
	}
	if len(a.Identity.UserAssigned) > 0 {
		d.Effects = append(d.Effects, "Its user-assigned identities are not deleted: they are separate resources and keep their access.")
	}
	if a.Encryption.KeySource == batch.KeySourceKeyVault {
		d.Effects = append(d.Effects, "Its customer-managed key "+a.Encryption.KeyIdentifier+" stays in its vault; only the account's use of it ends.")
	}
	p.renderConfirm(w, r, pg, d)
}

// confirmDeleteKey is the confirmation page of deleting key name of v.
func (p *Portal) confirmDeleteKey(w http.ResponseWriter, r *http.Request, s *session, v *keyvault.Vault, name string) {
	keyPage := "/vaults/" + url.PathEscape(v.Name) + "/keys/" + url.PathEscape(name)
	pg := &page{Title: "Delete key " + name, Session: s, Tabs: vaultTabs(v.Name, "Keys"),
		Crumbs: vaultCrumbs(v.Name, "Keys", "/vaults/"+url.PathEscape(v.Name)+"/keys", "Key "+name, keyPage, "Delete", "")}
	d := confirmData{Heading: "Delete key " + name + " of key vault " + v.Name + "?", Action: keyPage + "/delete", Cancel: keyPage}
	versions := "all its versions"
	if vers, err := p.allVersions(r.Context(), v.Name, name); err == nil && len(vers) > 0 {
		versions = fmt.Sprintf("all its versions (%d)", len(vers))
		if len(vers) == 1 {
			versions = "its only version"
		}
	}
	d.Effects = append(d.Effects,
		"The key and "+versions+" go to soft-delete: no version can be used for wrap, unwrap or any other operation, and the name cannot be used for a new key until the deleted key is purged.",
		"It can be recovered, with every version, from the Deleted keys list of this vault for the retention period of "+retentionText(v, p.now())+"; then it is purged.",
		purgeText(v, "the deleted key"))
	d.Effects = appendIf(d.Effects, lockText(p.accountsUsing(r.Context(), s, v.Name, name, ""), "this key"))
	p.renderConfirm(w, r, pg, d)
}

// confirmRemovePolicy is the confirmation page of removing the access
// policy ap of v; who names its principal when known.
func (p *Portal) confirmRemovePolicy(w http.ResponseWriter, r *http.Request, s *session, v *keyvault.Vault, ap keyvault.AccessPolicy, who string) {
	back := "/vaults/" + url.PathEscape(v.Name) + "/access-policies"
	pg := &page{Title: "Delete access policy", Session: s, Tabs: vaultTabs(v.Name, "Access policies"),
		Crumbs: vaultCrumbs(v.Name, "Access policies", back, "Delete access policy", "")}
	principal := "principal " + ap.ObjectID
	if who != "" {
		principal = who + " (principal id " + ap.ObjectID + ")"
	}
	if ap.ApplicationID != "" {
		principal += " with application " + ap.ApplicationID
	}
	d := confirmData{Heading: "Delete the access policy of " + principal + " on key vault " + v.Name + "?",
		Action: back + "/remove", Cancel: back, Hidden: [][2]string{{"objectId", ap.ObjectID}, {"applicationId", ap.ApplicationID}}}
	perms := "no key permissions"
	if len(ap.Keys) > 0 {
		perms = "the key permissions " + strings.Join(ap.Keys, ", ")
	}
	d.Effects = append(d.Effects, "The principal loses "+perms+" on this vault (and any secret, certificate and storage permissions of the same policy).")
	if v.EnableRbacAuthorization {
		d.Effects = append(d.Effects, "This vault uses role-based access control, so access policies are not used now; roles granted to the principal stay.")
	} else {
		d.Effects = appendIf(d.Effects, lockText(p.accountsUsing(r.Context(), s, v.Name, "", ap.ObjectID), "a key of this vault with this identity"))
	}
	d.Effects = append(d.Effects, "An access policy is not soft-deleted: to undo this, add the policy again.")
	p.renderConfirm(w, r, pg, d)
}

// confirmDeleteVault is the confirmation page of deleting v.
func (p *Portal) confirmDeleteVault(w http.ResponseWriter, r *http.Request, s *session, v *keyvault.Vault) {
	base := "/vaults/" + url.PathEscape(v.Name)
	pg := &page{Title: "Delete key vault " + v.Name, Session: s, Tabs: vaultTabs(v.Name, "Overview"),
		Crumbs: vaultCrumbs(v.Name, "Delete", "")}
	d := confirmData{Heading: "Delete key vault " + v.Name + "?", Action: base + "/delete", Cancel: base}
	d.Effects = append(d.Effects,
		"The vault goes to soft-delete with all its keys: none of them can be used, and the name "+v.Name+" stays reserved until the deleted vault is purged.",
		"It can be recovered, with its keys and access policies, for the retention period of "+retentionText(v, p.now())+" from Manage deleted vaults (linked from the home page); then it is purged with its keys.",
		purgeText(v, "the deleted vault"),
		"Role assignments on the vault are removed and do not come back when it is recovered.")
	d.Effects = appendIf(d.Effects, lockText(p.accountsUsing(r.Context(), s, v.Name, "", ""), "a key of this vault"))
	p.renderConfirm(w, r, pg, d)
}

// deleteVault deletes a vault (soft delete) once confirmed.
func (p *Portal) deleteVault(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	v, err := p.vault(ctx, s, r.PathValue("vault"), actionVaultDelete)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	if !confirmed(r) {
		p.confirmDeleteVault(w, r, s, v)
		return
	}
	if _, err := p.cfg.KeyVault.DeleteVault(ctx, p.sub(), v.ResourceGroup, v.Name); err != nil {
		p.fail(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/?deleted=vault&name="+url.QueryEscape(v.Name), http.StatusSeeOther)
}

// deletedNotice is the home page's notice after a deletion, with a link
// to where the deleted thing can be recovered, if it can.
func deletedNotice(q url.Values) (string, *crumb) {
	name := q.Get("name")
	if name == "" {
		return "", nil
	}
	switch q.Get("deleted") {
	case "account":
		return "Batch account " + name + " was deleted.", nil
	case "vault":
		return "Key vault " + name + " was deleted. It can be recovered until its retention period ends.",
			&crumb{Label: "Manage deleted vaults", Href: deletedVaultsPath}
	}
	return "", nil
}
