package portal

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"custody"
	"custody/keyvault"
	"custody/rm"
)

// Manage deleted vaults: the soft-deleted vaults of the subscription, with
// Recover and Purge. Each action checks what the ARM operation checks:
// listing needs Microsoft.KeyVault/deletedVaults/read at the subscription
// (GET .../providers/Microsoft.KeyVault/deletedVaults), recovering needs
// Microsoft.KeyVault/vaults/write at the vault's resource id (PUT with
// createMode "recover"), purging needs
// Microsoft.KeyVault/locations/deletedVaults/purge/action at the
// subscription (POST .../locations/{location}/deletedVaults/{name}/purge).

const (
	actionDeletedVaultRead  = "Microsoft.KeyVault/deletedVaults/read"
	actionDeletedVaultPurge = "Microsoft.KeyVault/locations/deletedVaults/purge/action"
	deletedVaultsPath       = "/deleted-vaults"
)

type deletedVaultsData struct {
	Vaults []*keyvault.Vault
	// ListErr is why the list cannot be shown (no permission).
	ListErr string
}

func deletedVaultsCrumbs(last ...string) []crumb {
	c := []crumb{{Label: "Home", Href: "/"}, {Label: "Manage deleted vaults", Href: deletedVaultsPath}}
	if len(last) > 0 {
		c = append(c, crumb{Label: last[0]})
	}
	c[len(c)-1].Href, c[len(c)-1].Current = "", true
	return c
}

// deletedVault returns the soft-deleted vault name of the subscription.
func (p *Portal) deletedVault(ctx context.Context, name string) (*keyvault.Vault, error) {
	vs, err := p.cfg.KeyVault.ListDeletedVaults(ctx, p.sub())
	if err != nil {
		return nil, err
	}
	for _, v := range vs {
		if strings.EqualFold(v.Name, name) {
			return v, nil
		}
	}
	return nil, custody.Errorf(custody.KindNotFound, "DeletedVaultNotFound",
		"There is no deleted key vault named %q. It may have been recovered or purged already.", name)
}

func (p *Portal) deletedVaultsPage(w http.ResponseWriter, r *http.Request, s *session) {
	pg := &page{}
	q := r.URL.Query()
	if name := q.Get("name"); name != "" {
		switch q.Get("done") {
		case "purged":
			pg.Notice = "Key vault " + name + " was purged. It cannot be recovered, and its name is free again."
		}
	}
	p.renderDeletedVaults(w, r, s, http.StatusOK, pg)
}

// renderDeletedVaults shows the list; errors already in pg (next to a
// vault's actions, or for the page) stay.
func (p *Portal) renderDeletedVaults(w http.ResponseWriter, r *http.Request, s *session, status int, pg *page) {
	ctx := r.Context()
	pg.Title, pg.Session, pg.Crumbs = "Manage deleted vaults", s, deletedVaultsCrumbs()
	d := deletedVaultsData{}
	if err := p.authorize(ctx, s, rm.SubscriptionID(p.sub()), actionDeletedVaultRead); err != nil {
		d.ListErr = custody.ErrorMessage(err)
		if status == http.StatusOK {
			status = statusOf(err)
		}
	} else if vs, err := p.cfg.KeyVault.ListDeletedVaults(ctx, p.sub()); err != nil {
		d.ListErr = custody.ErrorMessage(err)
		if status == http.StatusOK {
			status = statusOf(err)
		}
	} else {
		d.Vaults = vs
	}
	if d.Vaults == nil {
		// Without the list, an action's error goes to the top of the page.
		for _, msg := range pg.Errors {
			pg.Error = msg
		}
		pg.Errors = nil
	}
	pg.Data = d
	p.render(w, r, status, "deleted_vaults", pg)
}

// deletedVaultFail shows err next to the actions of the deleted vault v
// on the list, or at the top of the page when there is no such vault.
func (p *Portal) deletedVaultFail(w http.ResponseWriter, r *http.Request, s *session, v *keyvault.Vault, err error) {
	pg := &page{}
	field := ""
	if v != nil {
		field = "vault-" + v.Name
	}
	pg.setError(err, field)
	p.renderDeletedVaults(w, r, s, statusOf(err), pg)
}

// recoverVault recovers a soft-deleted vault with its keys and access
// policies, as a PUT with createMode "recover" does.
func (p *Portal) recoverVault(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	name := r.PathValue("vault")
	v, err := p.deletedVault(ctx, name)
	if err == nil {
		err = p.authorize(ctx, s, v.ID, actionVaultWrite)
	}
	if err == nil {
		loc := v.Location
		_, _, err = p.cfg.KeyVault.PutVault(ctx, p.sub(), v.ResourceGroup, v.Name, keyvault.VaultUpdate{CreateMode: "recover", Location: &loc})
	}
	if err != nil {
		p.deletedVaultFail(w, r, s, v, err)
		return
	}
	http.Redirect(w, r, "/vaults/"+url.PathEscape(v.Name)+"?recovered=1", http.StatusSeeOther)
}

// purgeVault purges a soft-deleted vault once confirmed.
func (p *Portal) purgeVault(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	name := r.PathValue("vault")
	v, err := p.deletedVault(ctx, name)
	if err == nil {
		err = p.authorize(ctx, s, rm.SubscriptionID(p.sub()), actionDeletedVaultPurge)
	}
	if err == nil && !confirmed(r) {
		p.confirmPurgeVault(w, r, s, v)
		return
	}
	if err == nil {
		err = plainPurgeError(p.cfg.KeyVault.PurgeDeletedVault(ctx, p.sub(), v.Location, v.Name), v)
	}
	if err != nil {
		p.deletedVaultFail(w, r, s, v, err)
		return
	}
	http.Redirect(w, r, deletedVaultsPath+"?done=purged&name="+url.QueryEscape(v.Name), http.StatusSeeOther)
}

// plainPurgeError words the refusal under purge protection for the page:
// the service's message names the API's way to recover.
func plainPurgeError(err error, v *keyvault.Vault) error {
	if err == nil || custody.ErrorCode(err) != "PurgeProtectionEnabled" || v.ScheduledPurgeAt == nil {
		return err
	}
	return custody.Errorf(custody.ErrorKind(err), "PurgeProtectionEnabled",
		"Key vault %s cannot be purged: purge protection is on, so it stays deleted but recoverable until its retention period ends on %s, and is purged automatically then. You can still recover it.",
		v.Name, v.ScheduledPurgeAt.UTC().Format("2006-01-02 15:04 UTC"))
}

// confirmPurgeVault is the confirmation page of purging the deleted vault v.
func (p *Portal) confirmPurgeVault(w http.ResponseWriter, r *http.Request, s *session, v *keyvault.Vault) {
	pg := &page{Title: "Purge key vault " + v.Name, Session: s, Crumbs: deletedVaultsCrumbs("Purge " + v.Name)}
	d := confirmData{Heading: "Permanently purge key vault " + v.Name + "?", Intro: "Purging it does this:", Button: "Purge",
		Action: deletedVaultsPath + "/" + url.PathEscape(v.Name) + "/purge", Cancel: deletedVaultsPath}
	d.Effects = append(d.Effects,
		"The deleted vault and all its keys, with every version, are removed for good: they cannot be recovered, and nothing wrapped with those keys can be unwrapped again.",
		"Its access policies are removed with it, and the name "+v.Name+" becomes free for anyone to take.")
	if v.EnablePurgeProtection {
		d.Effects = append(d.Effects, "Purge protection is on for this vault: the purge is refused until the retention period ends, and the vault is purged automatically then.")
	}
	d.Effects = appendIf(d.Effects, lockText(p.accountsUsing(r.Context(), s, v.Name, "", ""), "a key of this vault"))
	p.renderConfirm(w, r, pg, d)
}
