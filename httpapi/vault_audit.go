package httpapi

import (
	"net/http"
	"strconv"
	"strings"

	"custody"
	"custody/identity"
	"custody/keyvault"
)

// The key service's audit log, read back on each vault's own host:
//
//	GET /audit?api-version=2025-07-01[&key={name}][&top={n}]
//
// answers {"value":[record, ...]} with the vault's records, most recent
// first. Azure has no such route (it sends vault logs to Azure Monitor); the
// CLI's `custody keyvault audit list` reads it. It needs a vault token and,
// on the vault, the Key Vault Administrator role or a management role that
// may act on the vault (Owner, Contributor): access policies do not grant
// it.

// actionVaultAudit reads a vault's audit log: a data action of Key Vault
// Administrator ("Microsoft.KeyVault/vaults/*") and a management action of
// Owner and Contributor ("*").
const actionVaultAudit = "Microsoft.KeyVault/vaults/audit/action"

// MaxAuditTop is the most audit records one request returns.
const MaxAuditTop = 10000

// VaultAuditHandler serves GET /audit on vault hosts and hands every other
// request to next (the keys data plane).
func (s *Server) VaultAuditHandler(kv *keyvault.Service, next http.Handler) http.Handler {
	api := &vaultAPI{s: s, kv: kv}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimSuffix(r.URL.Path, "/")
		if !strings.EqualFold(p, "/audit") {
			next.ServeHTTP(w, r)
			return
		}
		api.audit(w, r)
	})
}

type auditRecordBody struct {
	ID             int64  `json:"id"`
	Time           string `json:"time"`
	CallerObjectID string `json:"callerObjectId"`
	Vault          string `json:"vault"`
	Key            string `json:"key"`
	Version        string `json:"version,omitempty"`
	Operation      string `json:"operation"`
	Outcome        string `json:"outcome"`
}

func (a *vaultAPI) audit(w http.ResponseWriter, r *http.Request) {
	_, vault := a.s.classify(hostOnly(r.Host))
	ar, err := a.s.authenticate(r, identity.AudienceVault)
	if err != nil {
		a.challenge(w, r, err)
		return
	}
	r = ar
	if err := a.auditRequest(w, r, vault); err != nil {
		writeError(w, r, err)
	}
}

func (a *vaultAPI) auditRequest(w http.ResponseWriter, r *http.Request, vault string) error {
	q := r.URL.Query()
	asked := q.Get("api-version")
	served, known := resolveVaultVersion(asked)
	if !known {
		return custody.Errorf(custody.KindInvalid, "BadParameter",
			"The api-version '%s' is not recognized; add ?api-version=%s.", asked, LatestKeyVaultAPIVersion)
	}
	a.s.servedAs(w, r, asked, served)
	if r.Method != http.MethodGet {
		return methodNotAllowed(r, "GET")
	}
	top := 100
	if s := q.Get("top"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxAuditTop {
			return custody.Errorf(custody.KindInvalid, "BadParameter", "top must be a whole number from 1 to %d, not %q.", MaxAuditTop, s)
		}
		top = n
	}
	v, err := a.kv.Vaults.Vault(r.Context(), vault)
	if err != nil || v.DeletedAt != nil {
		if err == nil || custody.IsNotFound(err) {
			return custody.Errorf(custody.KindNotFound, "VaultNotFound",
				"Vault '%s' does not exist or is deleted. List vaults with custody keyvault list.", vault)
		}
		return err
	}
	c, _ := custody.CallerFrom(r.Context())
	rmSvc := a.s.cfg.RM
	if rmSvc == nil {
		return custody.Internal(nil, "no resource manager to check roles")
	}
	ok, err := rmSvc.HasRoleAt(r.Context(), c.ObjectID, v.ID, actionVaultAudit, true)
	if err != nil {
		return err
	}
	if !ok {
		if ok, err = rmSvc.HasRoleAt(r.Context(), c.ObjectID, v.ID, actionVaultAudit, false); err != nil {
			return err
		}
	}
	if !ok {
		e := custody.Errorf(custody.KindForbidden, "Forbidden",
			"The caller '%s' may not read the audit log of vault '%s'. Reading it needs the Key Vault Administrator role, or Owner or Contributor, on the vault; access policies do not grant it.", c.ObjectID, v.Name)
		e.Inner = "ForbiddenByRbac"
		return e
	}
	recs, err := a.kv.ListAudit(r.Context(), keyvault.AuditFilter{VaultName: v.Name, KeyName: q.Get("key"), Limit: top})
	if err != nil {
		return err
	}
	out := make([]auditRecordBody, 0, len(recs))
	for _, rec := range recs {
		out = append(out, auditRecordBody{ID: rec.ID, Time: armTime(rec.Time), CallerObjectID: rec.CallerOID, Vault: rec.VaultName,
			Key: rec.KeyName, Version: rec.Version, Operation: rec.Operation, Outcome: rec.Outcome})
	}
	writeJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}
