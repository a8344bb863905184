package portal

import (
	"context"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"custody"
	"custody/batch"
	"custody/keyvault"
)

// The Encryption page of a Batch account: Microsoft managed key or
// Customer-managed keys, the key given by its identifier or picked with
// "Select a key vault and key" (vault, key, then a version or versionless).

type keyOption struct {
	Name    string
	Kid     string
	Enabled bool
}

type versionOption struct {
	Version string
	Kid     string
	Enabled bool
	Created *int64
}

type encryptionData struct {
	accountData
	Vaults   []string
	Keys     []keyOption
	Versions []versionOption
	// Picked is the identifier the picker selection makes.
	Picked string
}

func (p *Portal) encryptionPage(w http.ResponseWriter, r *http.Request, s *session) {
	a, err := p.account(r.Context(), s, r.PathValue("account"), actionBatchRead)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	f := url.Values{"keySource": {a.Encryption.KeySource}, "method": {"uri"}, "keyIdentifier": {a.Encryption.KeyIdentifier}}
	if f.Get("keySource") == "" {
		f.Set("keySource", batch.KeySourceBatch)
	}
	if v, k, ver, ok := p.parseKeyID(a.Encryption.KeyIdentifier); ok {
		f.Set("vault", v)
		f.Set("key", k)
		f.Set("version", ver)
	}
	q := r.URL.Query()
	for _, n := range []string{"vault", "key", "version", "method", "keySource"} {
		if q.Has(n) {
			f.Set(n, q.Get(n))
		}
	}
	pg := &page{}
	if q.Get("saved") != "" {
		pg.Notice = "Saved. The account's data key is now wrapped by the selected key."
		if a.Encryption.KeySource == batch.KeySourceBatch {
			pg.Notice = "Saved. The account now uses a Microsoft managed key."
		}
	}
	p.renderEncryption(w, r, s, http.StatusOK, a, f, pg)
}

// parseKeyID splits https://{vault}.vault.{domain}[:port]/keys/{name}[/{version}].
func (p *Portal) parseKeyID(id string) (vault, key, version string, ok bool) {
	u, err := url.Parse(id)
	if err != nil || u.Host == "" {
		return "", "", "", false
	}
	host := u.Hostname()
	i := strings.Index(host, ".vault.")
	if i <= 0 {
		return "", "", "", false
	}
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(segs) < 2 || len(segs) > 3 || segs[0] != "keys" {
		return "", "", "", false
	}
	if len(segs) == 3 {
		version = segs[2]
	}
	return host[:i], segs[1], version, true
}

// picker fills the vault, key and version choices for the form's values.
// Lists the principal may not read come back as field errors.
func (p *Portal) picker(ctx context.Context, s *session, f url.Values, d *encryptionData, pg *page) {
	vs, err := p.cfg.KeyVault.ListVaults(ctx, p.sub(), "", 0)
	if err != nil {
		pg.setError(err, "vault")
		return
	}
	for _, v := range vs {
		if ok, _ := p.can(ctx, s, v.ID, actionVaultRead); ok {
			d.Vaults = append(d.Vaults, v.Name)
		}
	}
	sort.Strings(d.Vaults)
	vault := f.Get("vault")
	if vault == "" {
		return
	}
	keys, err := p.allKeys(ctx, vault)
	if err != nil {
		pg.setError(err, "key")
		return
	}
	d.Keys = keys
	key := f.Get("key")
	if key == "" {
		return
	}
	vers, err := p.allVersions(ctx, vault, key)
	if err != nil {
		pg.setError(err, "version")
		return
	}
	d.Versions = vers
	d.Picked = p.cfg.KeyVault.VaultURI(vault) + "keys/" + key
	if v := f.Get("version"); v != "" {
		d.Picked += "/" + v
	}
}

func lastSegment(id string) string {
	id = strings.TrimRight(id, "/")
	return id[strings.LastIndex(id, "/")+1:]
}

// allKeys lists a vault's live keys through the key vault's access checks.
func (p *Portal) allKeys(ctx context.Context, vault string) ([]keyOption, error) {
	var out []keyOption
	for skip := 0; ; {
		l, err := p.cfg.KeyVault.ListKeys(ctx, vault, keyvault.Page{Skip: skip, Max: 25, Link: func(int, int) string { return "next" }})
		if err != nil {
			return nil, err
		}
		for _, k := range l.Value {
			out = append(out, keyOption{Name: lastSegment(k.Kid), Kid: k.Kid, Enabled: k.Attributes.Enabled == nil || *k.Attributes.Enabled})
		}
		if l.NextLink == nil || len(l.Value) == 0 {
			break
		}
		skip += len(l.Value)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// allVersions lists a key's versions, newest first.
func (p *Portal) allVersions(ctx context.Context, vault, key string) ([]versionOption, error) {
	var out []versionOption
	for skip := 0; ; {
		l, err := p.cfg.KeyVault.ListKeyVersions(ctx, vault, key, keyvault.Page{Skip: skip, Max: 25, Link: func(int, int) string { return "next" }})
		if err != nil {
			return nil, err
		}
		for _, k := range l.Value {
			out = append(out, versionOption{Version: lastSegment(k.Kid), Kid: k.Kid, Enabled: k.Attributes.Enabled == nil || *k.Attributes.Enabled, Created: k.Attributes.Created})
		}
		if l.NextLink == nil || len(l.Value) == 0 {
			break
		}
		skip += len(l.Value)
	}
	sort.SliceStable(out, func(i, j int) bool {
		ci, cj := int64(0), int64(0)
		if out[i].Created != nil {
			ci = *out[i].Created
		}
		if out[j].Created != nil {
			cj = *out[j].Created
		}
		return ci > cj
	})
	// Versions made in the same second tie on their creation time: the
	// current version (the one a versionless identifier means) goes first.
	if cur, err := p.cfg.KeyVault.GetKey(ctx, vault, key, ""); err == nil {
		for i, o := range out {
			if o.Kid == cur.Key.Kid && i > 0 {
				copy(out[1:i+1], out[0:i])
				out[0] = o
				break
			}
		}
	}
	return out, nil
}

func (p *Portal) renderEncryption(w http.ResponseWriter, r *http.Request, s *session, status int, a *batch.Account, f url.Values, pg *page) {
	pg.Title, pg.Session, pg.Form = "Encryption: "+a.Name, s, f
	pg.Tabs = accountTabs(a.Name, "Encryption")
	pg.Crumbs = []crumb{{Label: "Home", Href: "/"}, {Label: "Batch account " + a.Name, Href: "/batch/" + url.PathEscape(a.Name)}, {Label: "Encryption", Current: true}}
	d := &encryptionData{accountData: p.accountData(a)}
	p.picker(r.Context(), s, f, d, pg)
	pg.Data = d
	p.render(w, r, status, "encryption", pg)
}

// encryptionPicker answers htmx with the picker alone.
func (p *Portal) encryptionPicker(w http.ResponseWriter, r *http.Request, s *session) {
	a, err := p.account(r.Context(), s, r.PathValue("account"), actionBatchRead)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	f := r.URL.Query()
	pg := &page{Session: s, Form: f}
	d := &encryptionData{accountData: p.accountData(a)}
	p.picker(r.Context(), s, f, d, pg)
	pg.Data = d
	p.renderFragment(w, r, "encryption", "picker", pg)
}

func (p *Portal) saveEncryption(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	f := r.PostForm
	a, err := p.account(ctx, s, r.PathValue("account"), actionBatchRead)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	if f.Get("action") != "save" {
		// "Load keys" without JavaScript: show the picker for the choice.
		p.renderEncryption(w, r, s, http.StatusOK, a, f, &page{})
		return
	}
	field := "keySource"
	enc := batch.Encryption{KeySource: batch.KeySourceBatch}
	var bad error
	if f.Get("keySource") == batch.KeySourceKeyVault {
		enc.KeySource = batch.KeySourceKeyVault
		if f.Get("method") == "select" {
			field = "key"
			switch {
			case f.Get("vault") == "":
				field = "vault"
				bad = custody.Errorf(custody.KindInvalid, "KeyVaultRequired", "Select a key vault.")
			case f.Get("key") == "":
				bad = custody.Errorf(custody.KindInvalid, "KeyRequired", "Select a key in vault %s.", f.Get("vault"))
			default:
				enc.KeyIdentifier = p.cfg.KeyVault.VaultURI(f.Get("vault")) + "keys/" + f.Get("key")
				if v := f.Get("version"); v != "" {
					enc.KeyIdentifier += "/" + v
				}
			}
		} else {
			field = "keyIdentifier"
			enc.KeyIdentifier = strings.TrimSpace(f.Get("keyIdentifier"))
			if enc.KeyIdentifier == "" {
				bad = custody.Errorf(custody.KindInvalid, "KeyIdentifierRequired", "Enter a key identifier (https://{vault}.vault.{domain}:{port}/keys/{name}/{version}), or select a key vault and key.")
			}
		}
	}
	if bad == nil {
		if err := p.authorize(ctx, s, a.ID, actionBatchWrite); err != nil {
			bad = err
		} else if _, err := p.cfg.Batch.Update(ctx, a.Name, nil, nil, &enc); err != nil {
			bad = err
		}
	}
	if bad != nil {
		pg := &page{}
		pg.setError(bad, field)
		pg.Error = "The encryption settings were not saved."
		if cur, err := p.cfg.Batch.Account(ctx, a.Name); err == nil {
			a = cur
		}
		p.renderEncryption(w, r, s, statusOf(bad), a, f, pg)
		return
	}
	http.Redirect(w, r, "/batch/"+url.PathEscape(a.Name)+"/encryption?saved=1", http.StatusSeeOther)
}
