package portal

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"custody"
	"custody/keyvault"
)

// Key pages call the key vault's data-plane methods with the signed-in
// principal as the caller, so the vault's access policies (or its RBAC
// roles) decide exactly as they do for azkeys.

// keyOps are the permitted operations of an RSA key, with the portal's
// labels.
var keyOps = [][2]string{{"encrypt", "Encrypt"}, {"decrypt", "Decrypt"}, {"sign", "Sign"}, {"verify", "Verify"},
	{"wrapKey", "Wrap Key"}, {"unwrapKey", "Unwrap Key"}}

type deletedKeyRow struct {
	Name      string
	Deleted   *int64
	PurgeDate *int64
}

type keysData struct {
	Vault      *keyvault.Vault
	Keys       []keyOption
	Deleted    []deletedKeyRow
	KeysErr    string
	DeletedErr string
}

func (p *Portal) keysPage(w http.ResponseWriter, r *http.Request, s *session) {
	p.renderKeys(w, r, s, http.StatusOK, &page{})
}

func (p *Portal) renderKeys(w http.ResponseWriter, r *http.Request, s *session, status int, pg *page) {
	ctx := r.Context()
	v, err := p.vault(ctx, s, r.PathValue("vault"), actionVaultRead)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	pg.Title, pg.Session = "Keys: "+v.Name, s
	pg.Tabs, pg.Crumbs = vaultTabs(v.Name, "Keys"), vaultCrumbs(v.Name, "Keys", "")
	d := keysData{Vault: v}
	if d.Keys, err = p.allKeys(ctx, v.Name); err != nil {
		d.KeysErr = custody.ErrorMessage(err)
	}
	dl, err := p.cfg.KeyVault.ListDeletedKeys(ctx, v.Name, keyvault.Page{Max: 25})
	if err != nil {
		d.DeletedErr = custody.ErrorMessage(err)
	} else {
		for _, k := range dl.Value {
			d.Deleted = append(d.Deleted, deletedKeyRow{Name: lastSegment(k.Kid), Deleted: k.DeletedDate, PurgeDate: k.ScheduledPurgeDate})
		}
	}
	switch r.URL.Query().Get("done") {
	case "deleted":
		pg.Notice = "The key was deleted. It stays in the deleted keys list below until its retention ends, and can be recovered."
	case "recovered":
		pg.Notice = "The key was recovered."
	}
	pg.Data = d
	p.render(w, r, status, "keys", pg)
}

type generateData struct {
	Vault string
}

func (p *Portal) generateKeyPage(w http.ResponseWriter, r *http.Request, s *session) {
	v, err := p.vault(r.Context(), s, r.PathValue("vault"), actionVaultRead)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	f := url.Values{"option": {"generate"}, "kty": {"RSA"}, "size": {"2048"}, "enabled": {"yes"}}
	p.renderGenerate(w, r, s, http.StatusOK, v.Name, f, &page{})
}

func (p *Portal) renderGenerate(w http.ResponseWriter, r *http.Request, s *session, status int, vault string, f url.Values, pg *page) {
	pg.Title, pg.Session, pg.Form = "Create a key", s, f
	pg.Tabs, pg.Crumbs = vaultTabs(vault, "Keys"), vaultCrumbs(vault, "Keys", "/vaults/"+url.PathEscape(vault)+"/keys", "Create a key", "")
	pg.Data = generateData{Vault: vault}
	p.render(w, r, status, "key_create", pg)
}

// rsaJWK is the private JWK of k, for an import.
func rsaJWK(k *rsa.PrivateKey) *keyvault.JSONWebKey {
	k.Precompute()
	b := func(i *big.Int) keyvault.Bytes { return keyvault.Bytes(i.Bytes()) }
	return &keyvault.JSONWebKey{Kty: "RSA", N: b(k.N), E: b(big.NewInt(int64(k.E))), D: b(k.D), P: b(k.Primes[0]), Q: b(k.Primes[1]),
		DP: b(k.Precomputed.Dp), DQ: b(k.Precomputed.Dq), QI: b(k.Precomputed.Qinv)}
}

// parsePEM reads an RSA private key in PKCS #1 or PKCS #8 PEM.
func parsePEM(text string) (*rsa.PrivateKey, error) {
	bad := &custody.Error{Kind: custody.KindInvalid, Code: "BadParameter", Target: "pem",
		Message: "The key to import must be an RSA private key in PEM (-----BEGIN RSA PRIVATE KEY----- or -----BEGIN PRIVATE KEY-----)."}
	blk, _ := pem.Decode([]byte(strings.TrimSpace(text)))
	if blk == nil {
		return nil, bad
	}
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, bad
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, bad
	}
	return rk, nil
}

func (p *Portal) generateKey(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	f := r.PostForm
	v, err := p.vault(ctx, s, r.PathValue("vault"), actionVaultRead)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	name := strings.TrimSpace(f.Get("name"))
	enabled := f.Get("enabled") != "no"
	attrs := &keyvault.KeyAttributes{Enabled: &enabled}
	var body []byte
	field := ""
	switch {
	case !keyvault.ValidKeyName(name):
		err = &custody.Error{Kind: custody.KindInvalid, Code: "BadParameter", Target: "name",
			Message: "Key names are 1 to 127 letters, digits and hyphens."}
		field = "name"
	case f.Get("option") == "import":
		var k *rsa.PrivateKey
		if k, err = parsePEM(f.Get("pem")); err == nil {
			body, _ = json.Marshal(keyvault.ImportKeyParameters{Key: rsaJWK(k), Attributes: attrs})
		}
		field = "pem"
	default:
		size, cerr := strconv.Atoi(f.Get("size"))
		if cerr != nil || (size != 2048 && size != 3072 && size != 4096) {
			err = custody.Errorf(custody.KindInvalid, "BadParameter", "Choose an RSA key size: 2048, 3072 or 4096.")
			field = "size"
			break
		}
		body, _ = json.Marshal(keyvault.CreateKeyParameters{Kty: "RSA", KeySize: &size, Attributes: attrs})
	}
	if err == nil {
		if f.Get("option") == "import" {
			_, err = p.cfg.KeyVault.ImportKey(ctx, v.Name, name, keyvault.JSONBody(body))
		} else {
			_, err = p.cfg.KeyVault.CreateKey(ctx, v.Name, name, keyvault.JSONBody(body))
		}
		field = ""
	}
	if err != nil {
		pg := &page{}
		pg.setError(err, field)
		f.Del("pem") // key material is never sent back
		p.renderGenerate(w, r, s, statusOf(err), v.Name, f, pg)
		return
	}
	http.Redirect(w, r, "/vaults/"+url.PathEscape(v.Name)+"/keys/"+url.PathEscape(name), http.StatusSeeOther)
}

type keyData struct {
	Vault    string
	Name     string
	Versions []versionOption
}

func (p *Portal) keyPage(w http.ResponseWriter, r *http.Request, s *session) {
	p.renderKey(w, r, s, http.StatusOK, &page{})
}

func (p *Portal) renderKey(w http.ResponseWriter, r *http.Request, s *session, status int, pg *page) {
	ctx := r.Context()
	v, err := p.vault(ctx, s, r.PathValue("vault"), actionVaultRead)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	name := r.PathValue("key")
	pg.Title, pg.Session = name, s
	pg.Tabs = vaultTabs(v.Name, "Keys")
	pg.Crumbs = vaultCrumbs(v.Name, "Keys", "/vaults/"+url.PathEscape(v.Name)+"/keys", "Key "+name, "")
	d := keyData{Vault: v.Name, Name: name}
	vers, err := p.allVersions(ctx, v.Name, name)
	if err != nil {
		if pg.Error == "" {
			pg.setError(err, "")
			status = statusOf(err)
		}
	}
	d.Versions = vers
	if r.URL.Query().Get("done") == "version" {
		pg.Notice = "A new version was created. It is the current version."
	}
	pg.Data = d
	p.render(w, r, status, "key", pg)
}

// newKeyVersion creates a new version of a key with the latest version's
// type and size, as the portal's "New Version" does.
func (p *Portal) newKeyVersion(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	v, err := p.vault(ctx, s, r.PathValue("vault"), actionVaultRead)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	name := r.PathValue("key")
	cur, err := p.cfg.KeyVault.GetKey(ctx, v.Name, name, "")
	if err == nil {
		size := len(cur.Key.N) * 8
		body, _ := json.Marshal(keyvault.CreateKeyParameters{Kty: cur.Key.Kty, KeySize: &size, KeyOps: cur.Key.KeyOps})
		_, err = p.cfg.KeyVault.CreateKey(ctx, v.Name, name, keyvault.JSONBody(body))
	}
	if err != nil {
		pg := &page{}
		pg.setError(err, "")
		p.renderKey(w, r, s, statusOf(err), pg)
		return
	}
	http.Redirect(w, r, "/vaults/"+url.PathEscape(v.Name)+"/keys/"+url.PathEscape(name)+"?done=version", http.StatusSeeOther)
}

func (p *Portal) deleteKey(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	v, err := p.vault(ctx, s, r.PathValue("vault"), actionVaultRead)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	if !confirmed(r) {
		p.confirmDeleteKey(w, r, s, v, r.PathValue("key"))
		return
	}
	if _, err := p.cfg.KeyVault.DeleteKey(ctx, v.Name, r.PathValue("key")); err != nil {
		pg := &page{}
		pg.setError(err, "")
		p.renderKey(w, r, s, statusOf(err), pg)
		return
	}
	http.Redirect(w, r, "/vaults/"+url.PathEscape(v.Name)+"/keys?done=deleted", http.StatusSeeOther)
}

func (p *Portal) recoverKey(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	v, err := p.vault(ctx, s, r.PathValue("vault"), actionVaultRead)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	if _, err := p.cfg.KeyVault.RecoverDeletedKey(ctx, v.Name, r.PathValue("key")); err != nil {
		pg := &page{}
		pg.setError(err, "")
		p.renderKeys(w, r, s, statusOf(err), pg)
		return
	}
	http.Redirect(w, r, "/vaults/"+url.PathEscape(v.Name)+"/keys?done=recovered", http.StatusSeeOther)
}

type versionData struct {
	Vault, Name, Version string
	Kid                  string
	Kty                  string
	Size                 int
	Enabled              bool
	Ops                  []string
	AllOps               [][2]string
	Created, Updated     *int64
	NotBefore, Expires   *int64
	// Partial is set when the version could not be read in full (a
	// disabled version answers only its list entry).
	Partial bool
}

func (p *Portal) keyVersionPage(w http.ResponseWriter, r *http.Request, s *session) {
	p.renderVersion(w, r, s, http.StatusOK, &page{})
}

func (p *Portal) renderVersion(w http.ResponseWriter, r *http.Request, s *session, status int, pg *page) {
	ctx := r.Context()
	v, err := p.vault(ctx, s, r.PathValue("vault"), actionVaultRead)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	name, ver := r.PathValue("key"), r.PathValue("version")
	pg.Title, pg.Session = name+" / "+ver, s
	pg.Tabs = vaultTabs(v.Name, "Keys")
	pg.Crumbs = vaultCrumbs(v.Name, "Keys", "/vaults/"+url.PathEscape(v.Name)+"/keys", "Key "+name, "/vaults/"+url.PathEscape(v.Name)+"/keys/"+url.PathEscape(name), "Version "+ver, "")
	d := versionData{Vault: v.Name, Name: name, Version: ver, AllOps: keyOps}
	b, err := p.cfg.KeyVault.GetKey(ctx, v.Name, name, ver)
	if err == nil {
		d.Kid, d.Kty, d.Size, d.Ops = b.Key.Kid, b.Key.Kty, len(b.Key.N)*8, b.Key.KeyOps
		d.Enabled = b.Attributes.Enabled == nil || *b.Attributes.Enabled
		d.Created, d.Updated, d.NotBefore, d.Expires = b.Attributes.Created, b.Attributes.Updated, b.Attributes.NotBefore, b.Attributes.Expires
	} else {
		// A disabled version cannot be read, but its list entry can.
		found := false
		if vers, lerr := p.allVersions(ctx, v.Name, name); lerr == nil {
			for _, o := range vers {
				if o.Version == ver {
					d.Kid, d.Enabled, d.Created, d.Partial, found = o.Kid, o.Enabled, o.Created, true, true
				}
			}
		}
		if !found {
			p.fail(w, r, s, err)
			return
		}
		if pg.Error == "" && pg.Notice == "" {
			pg.Notice = "This version is disabled, so its key material and permitted operations cannot be read. Enable it to use it again."
		}
	}
	if r.URL.Query().Get("done") == "saved" && pg.Error == "" {
		pg.Notice = "Saved."
	}
	pg.Data = d
	p.render(w, r, status, "key_version", pg)
}

func (p *Portal) updateKeyVersion(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	f := r.PostForm
	v, err := p.vault(ctx, s, r.PathValue("vault"), actionVaultRead)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	name, ver := r.PathValue("key"), r.PathValue("version")
	enabled := f.Get("enabled") == "yes"
	u := keyvault.UpdateKeyParameters{Attributes: &keyvault.KeyAttributes{Enabled: &enabled}}
	if f.Get("opsShown") == "1" {
		u.KeyOps = f["ops"]
		if len(u.KeyOps) == 0 {
			pg := &page{}
			pg.setError(&custody.Error{Kind: custody.KindInvalid, Code: "BadParameter", Message: "Select at least one permitted operation (a customer-managed key needs Wrap Key and Unwrap Key)."}, "ops")
			p.renderVersion(w, r, s, http.StatusBadRequest, pg)
			return
		}
	}
	body, _ := json.Marshal(u)
	if _, err := p.cfg.KeyVault.UpdateKey(ctx, v.Name, name, ver, keyvault.JSONBody(body)); err != nil {
		pg := &page{}
		pg.setError(err, "")
		p.renderVersion(w, r, s, statusOf(err), pg)
		return
	}
	http.Redirect(w, r, "/vaults/"+url.PathEscape(v.Name)+"/keys/"+url.PathEscape(name)+"/"+url.PathEscape(ver)+"?done=saved", http.StatusSeeOther)
}
