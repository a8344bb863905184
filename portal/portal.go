// Package portal is Custody's web portal, served on portal.{domain}: the
// Azure portal steps of the customer-managed-key walk-through (create a
// Batch account with a managed identity, create a key vault with purge
// protection, grant the identity Get, Wrap Key and Unwrap Key, generate a
// key, enable customer-managed keys on the account's Encryption page) as
// server-rendered pages.
//
// Pages are html/template documents that read and work without
// JavaScript; a vendored htmx (static/htmx.min.js) only makes forms
// smoother, and a few lines of script add a copy button. The portal holds no
// rules of its own: every action calls the same domain service the API
// calls, after the same RBAC check at the same scope with the same action
// name (rm.Service.Authorize), and key operations go through the key vault's
// own access checks with the signed-in principal as the caller. Errors are
// the services' *custody.Error values, shown next to the field or action
// they concern.
//
// Sign-in: a service principal signs in with its client id and secret
// (identity.Service.Authenticate). The bootstrap admin can also use a
// one-time sign-in link: MintSignInLink writes the SHA-256 of a random token
// into {data-dir}/portal-signin/ (mode 0600) and returns the link; the portal
// accepts the token once, within LinkTTL, for the admin only. Only someone
// who can write into the server's data directory can mint a link, the same
// people who can read the admin's secret. Sessions are server-side (a
// random id in an HttpOnly, Secure, SameSite=Strict cookie) and every POST
// form carries the session's CSRF token. Every request checks again that
// the session's principal exists and that the client secret it signed in
// with is still valid, so deleting a principal ends its sessions at once;
// roles are checked by each action as it runs. After sign-in the browser
// returns only to a same-site path (safeNext).
package portal

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"custody"
	"custody/batch"
	"custody/compute"
	"custody/identity"
	"custody/keyvault"
	"custody/rm"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config is what the portal needs: the domain services it calls and the
// names it answers on.
type Config struct {
	Identity *identity.Service
	RM       *rm.Service
	KeyVault *keyvault.Service
	Batch    *batch.Service
	// Data and Compute may be nil; the pools, jobs and tasks pages then say
	// the service is not running.
	Data    *batch.DataService
	Compute *compute.Service
	// DataDir holds the one-time sign-in tokens.
	DataDir string
	// AdminClientID is the client id the one-time sign-in link signs in.
	AdminClientID string
	Logger        *slog.Logger
	// SessionTTL is how long a session lasts (default 8 hours).
	SessionTTL time.Duration
}

// LinkTTL is how long a one-time sign-in link stays valid.
const LinkTTL = 15 * time.Minute

// linkDir is the folder of one-time sign-in tokens in the data directory.
const linkDir = "portal-signin"

const (
	sessionCookie = "custody_portal"
	preCookie     = "custody_portal_signin"
	maxForm       = 1 << 20
)

// Portal is the portal's HTTP handler.
type Portal struct {
	cfg   Config
	log   *slog.Logger
	mux   *http.ServeMux
	pages *pages
	now   func() time.Time

	mu       sync.Mutex
	sessions map[string]*session
	// patterns are the page and action routes, for Routes.
	patterns []string
}

// session is one signed-in browser.
type session struct {
	ID       string
	CSRF     string
	ObjectID string
	AppID    string
	Name     string
	Expires  time.Time
	// KeyID is the client secret the session was started with; empty for
	// the one-time link. The principal, and this secret, are checked again
	// on every request (see live).
	KeyID string
}

// New returns the portal handler.
func New(cfg Config) (*Portal, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	pg, err := loadPages()
	if err != nil {
		return nil, err
	}
	p := &Portal{cfg: cfg, log: cfg.Logger, pages: pg, now: time.Now, sessions: map[string]*session{}}
	p.routes()
	return p, nil
}

func (p *Portal) routes() {
	m := http.NewServeMux()
	handle := func(pattern string, h http.HandlerFunc) {
		m.HandleFunc(pattern, h)
		p.patterns = append(p.patterns, pattern)
	}
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServer(http.FS(static))))
	handle("GET /signin", p.signInPage)
	handle("POST /signin", p.signIn)
	handle("GET /signin/link", p.linkPage)
	handle("POST /signin/link", p.linkSignIn)
	handle("POST /signout", p.signOut)

	handle("GET /{$}", p.auth(p.home))
	handle("GET /batch/create", p.auth(p.createAccountPage))
	handle("POST /batch/create", p.auth(p.createAccount))
	handle("GET /batch/{account}", p.auth(p.accountOverview))
	handle("POST /batch/{account}/delete", p.auth(p.deleteAccount))
	handle("POST /batch/{account}/reencrypt", p.auth(p.reencrypt))
	handle("GET /batch/{account}/reencryption", p.auth(p.reencryptionCard))
	handle("GET /batch/{account}/encryption", p.auth(p.encryptionPage))
	handle("POST /batch/{account}/encryption", p.auth(p.saveEncryption))
	handle("GET /batch/{account}/encryption/picker", p.auth(p.encryptionPicker))
	handle("GET /batch/{account}/pools", p.auth(p.poolsPage))
	handle("GET /batch/{account}/jobs", p.auth(p.jobsPage))
	handle("GET /batch/{account}/jobs/{job}", p.auth(p.jobPage))
	handle("GET /batch/{account}/jobs/{job}/tasks/{task}", p.auth(p.taskPage))

	handle("GET /deleted-vaults", p.auth(p.deletedVaultsPage))
	handle("POST /deleted-vaults/{vault}/recover", p.auth(p.recoverVault))
	handle("POST /deleted-vaults/{vault}/purge", p.auth(p.purgeVault))
	handle("GET /vaults/create", p.auth(p.createVaultPage))
	handle("POST /vaults/create", p.auth(p.createVault))
	handle("GET /vaults/{vault}", p.auth(p.vaultOverview))
	handle("POST /vaults/{vault}/delete", p.auth(p.deleteVault))
	handle("GET /vaults/{vault}/access-policies", p.auth(p.accessPoliciesPage))
	handle("POST /vaults/{vault}/access-policies", p.auth(p.addAccessPolicy))
	handle("POST /vaults/{vault}/access-policies/remove", p.auth(p.removeAccessPolicy))
	handle("GET /vaults/{vault}/keys", p.auth(p.keysPage))
	handle("GET /vaults/{vault}/generate-key", p.auth(p.generateKeyPage))
	handle("POST /vaults/{vault}/generate-key", p.auth(p.generateKey))
	handle("POST /vaults/{vault}/deleted-keys/{key}/recover", p.auth(p.recoverKey))
	handle("GET /vaults/{vault}/keys/{key}", p.auth(p.keyPage))
	handle("POST /vaults/{vault}/keys/{key}/new-version", p.auth(p.newKeyVersion))
	handle("POST /vaults/{vault}/keys/{key}/delete", p.auth(p.deleteKey))
	handle("GET /vaults/{vault}/keys/{key}/{version}", p.auth(p.keyVersionPage))
	handle("POST /vaults/{vault}/keys/{key}/{version}", p.auth(p.updateKeyVersion))
	p.mux = m
}

// Routes returns the ServeMux patterns of the portal's pages and actions
// ("GET /vaults/{vault}"), in registration order, static files aside: the
// table the authorization tests enumerate.
func (p *Portal) Routes() []string { return slices.Clone(p.patterns) }

// ServeHTTP serves the portal with security headers on every answer.
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	if !strings.HasPrefix(r.URL.Path, "/static/") {
		h.Set("Cache-Control", "no-store")
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			p.fail(w, r, nil, custody.Errorf(custody.KindInvalid, "InvalidForm", "The form could not be read (it may be larger than 1 MiB). Go back and try again."))
			return
		}
	}
	p.mux.ServeHTTP(w, r)
}

// handler is a page handler for a signed-in principal.
type handler func(w http.ResponseWriter, r *http.Request, s *session)

// auth requires a session (otherwise the sign-in page) and, on POST, the
// session's CSRF token. The request context carries the signed-in principal
// as the caller, as a verified token does on the API.
func (p *Portal) auth(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := p.session(r)
		if s != nil {
			ok, err := p.live(r.Context(), s)
			if err != nil {
				p.fail(w, r, nil, err)
				return
			}
			if !ok {
				p.endSession(s)
				s = nil
			}
		}
		if s == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			p.fail(w, r, nil, custody.Errorf(custody.KindUnauthenticated, "SignInRequired", "Your session has ended. Sign in again, then repeat the action."))
			return
		}
		if r.Method == http.MethodPost && !sameToken(r.PostForm.Get("csrf"), s.CSRF) {
			p.fail(w, r, s, custody.Errorf(custody.KindForbidden, "InvalidCSRFToken", "The form is missing its security token or it does not match your session, so nothing was changed. Reload the page and submit the form again."))
			return
		}
		ctx := custody.WithCaller(r.Context(), custody.Caller{ObjectID: s.ObjectID, AppID: s.AppID, TenantID: p.cfg.Identity.TenantID, Issuer: p.cfg.Identity.Issuer, Audience: "portal"})
		h(w, r.WithContext(ctx), s)
	}
}

func sameToken(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// session returns the live session of r, if any.
func (p *Portal) session(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.sessions[c.Value]
	if s == nil {
		return nil
	}
	if p.now().After(s.Expires) {
		delete(p.sessions, c.Value)
		return nil
	}
	return s
}

// live reports whether the session's principal still exists and, for a
// session started with a client secret, still holds that unexpired secret.
// Roles are not cached: every action checks them when it runs.
func (p *Portal) live(ctx context.Context, s *session) (bool, error) {
	return p.cfg.Identity.PrincipalValid(ctx, s.ObjectID, s.AppID, s.KeyID)
}

// endSession forgets s.
func (p *Portal) endSession(s *session) {
	p.mu.Lock()
	delete(p.sessions, s.ID)
	p.mu.Unlock()
}

// startSession signs pr in on this browser; keyID is the client secret it
// signed in with (empty for the one-time link).
func (p *Portal) startSession(w http.ResponseWriter, pr *identity.Principal, keyID string) {
	s := &session{ID: randomToken(), CSRF: randomToken(), ObjectID: pr.ObjectID, AppID: pr.AppID, Name: pr.DisplayName,
		Expires: p.now().Add(p.cfg.SessionTTL), KeyID: keyID}
	if s.Name == "" {
		s.Name = pr.AppID
	}
	p.mu.Lock()
	now := p.now()
	for id, old := range p.sessions {
		if now.After(old.Expires) {
			delete(p.sessions, id)
		}
	}
	p.sessions[s.ID] = s
	p.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: s.ID, Path: "/", HttpOnly: true, Secure: true,
		SameSite: http.SameSiteStrictMode, MaxAge: int(p.cfg.SessionTTL.Seconds())})
}

// maxNext is the longest page address kept to return to after sign-in.
const maxNext = 2048

// safeNext keeps only same-site paths as the page to return to after
// sign-in; anything else gives "/". Browsers drop tabs and newlines from
// URLs and read a backslash as a slash, so "/\t/evil.example" and
// "/\\evil.example" mean //evil.example, another site: a path is kept only
// if it has no control characters, spaces or backslashes, does not start
// with "//", has no scheme or host, and the same holds once it is
// percent-decoded.
func safeNext(next string) string {
	if !localPath(next) {
		return "/"
	}
	if dec, err := url.PathUnescape(next); err != nil || !localPath(dec) {
		return "/"
	}
	return next
}

func localPath(s string) bool {
	if s == "" || len(s) > maxNext || s[0] != '/' || strings.HasPrefix(s, "//") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || c == '\\' || c >= 0x80 {
			return false
		}
	}
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "" && u.Host == "" && u.User == nil && u.Opaque == ""
}

func (p *Portal) signInPage(w http.ResponseWriter, r *http.Request) {
	p.renderSignIn(w, r, http.StatusOK, r.URL.Query().Get("next"), "", nil)
}

// renderSignIn shows the sign-in form with a fresh pre-session token (a
// cookie and a hidden field that must match), so that another site cannot
// sign a browser in.
func (p *Portal) renderSignIn(w http.ResponseWriter, r *http.Request, status int, next, clientID string, err error) {
	tok := randomToken()
	http.SetCookie(w, &http.Cookie{Name: preCookie, Value: tok, Path: "/signin", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	pg := &page{Title: "Sign in", Form: url.Values{"clientId": {clientID}, "next": {safeNext(next)}}, Data: tok}
	pg.setError(err, "secret")
	p.render(w, r, status, "signin", pg)
}

func (p *Portal) signIn(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	next := f.Get("next")
	c, cerr := r.Cookie(preCookie)
	if cerr != nil || !sameToken(f.Get("csrf"), c.Value) {
		p.renderSignIn(w, r, http.StatusForbidden, next, f.Get("clientId"), custody.Errorf(custody.KindForbidden, "InvalidCSRFToken",
			"The sign-in form expired or was not sent by this portal. Enter your client id and secret again."))
		return
	}
	clientID, secret := strings.TrimSpace(f.Get("clientId")), f.Get("secret")
	if clientID == "" || secret == "" {
		p.renderSignIn(w, r, http.StatusBadRequest, next, clientID, custody.Errorf(custody.KindInvalid, "MissingCredentials",
			"Enter both the client id (application id) and a client secret of a service principal."))
		return
	}
	pr, keyID, err := p.cfg.Identity.AuthenticateCredential(r.Context(), clientID, secret)
	if err != nil {
		var oe *identity.OAuthError
		if errors.As(err, &oe) {
			err = custody.Errorf(custody.KindUnauthenticated, "SignInFailed", "Sign-in failed: %s", oe.Description)
		}
		p.renderSignIn(w, r, http.StatusUnauthorized, next, clientID, err)
		return
	}
	p.startSession(w, pr, keyID)
	http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
}

func (p *Portal) signOut(w http.ResponseWriter, r *http.Request) {
	if s := p.session(r); s != nil && sameToken(r.PostForm.Get("csrf"), s.CSRF) {
		p.endSession(s)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

// MintSignInLink creates a one-time sign-in link for the bootstrap admin:
// it stores the token's SHA-256 in dataDir/portal-signin and returns
// portalURL/signin/link?token=... The link works once, within LinkTTL.
func MintSignInLink(dataDir, portalURL string) (string, error) {
	dir := filepath.Join(dataDir, linkDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	tok := randomToken()
	sum := sha256.Sum256([]byte(tok))
	f, err := os.OpenFile(filepath.Join(dir, hex.EncodeToString(sum[:])), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return strings.TrimRight(portalURL, "/") + "/signin/link?token=" + tok, nil
}

// redeemLink consumes a one-time token: true if it was minted, unused and
// younger than LinkTTL. Expired tokens are removed on the way.
func (p *Portal) redeemLink(tok string) bool {
	if tok == "" || len(tok) > 100 {
		return false
	}
	dir := filepath.Join(p.cfg.DataDir, linkDir)
	if es, err := os.ReadDir(dir); err == nil {
		for _, e := range es {
			if info, err := e.Info(); err == nil && p.now().Sub(info.ModTime()) > LinkTTL {
				_ = os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	}
	sum := sha256.Sum256([]byte(tok))
	path := filepath.Join(dir, hex.EncodeToString(sum[:]))
	info, err := os.Stat(path)
	if err != nil || p.now().Sub(info.ModTime()) > LinkTTL {
		return false
	}
	// Removing the file is the one-time use: of two racing requests only
	// one removes it.
	return os.Remove(path) == nil
}

// linkPage shows a button that signs in with the link's token. The token is
// consumed by the POST, so link previews and prefetching do not use it up.
func (p *Portal) linkPage(w http.ResponseWriter, r *http.Request) {
	p.render(w, r, http.StatusOK, "signin_link", &page{Title: "Sign in with a one-time link", Data: r.URL.Query().Get("token")})
}

func (p *Portal) linkSignIn(w http.ResponseWriter, r *http.Request) {
	tok := r.PostForm.Get("token")
	if !p.redeemLink(tok) {
		pg := &page{Title: "Sign in with a one-time link"}
		pg.setError(custody.Errorf(custody.KindUnauthenticated, "SignInLinkInvalid",
			"This sign-in link is not valid: it was already used, it is older than %d minutes, or it was not made by this server. Run `custody portal` for a new link, or sign in with a client id and secret.", int(LinkTTL.Minutes())), "")
		p.render(w, r, http.StatusUnauthorized, "signin_link", pg)
		return
	}
	pr, err := p.cfg.Identity.Store.PrincipalByAppID(r.Context(), p.cfg.AdminClientID)
	if err != nil {
		p.fail(w, r, nil, err)
		return
	}
	p.startSession(w, pr, "")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// authorize checks the signed-in principal's role at scope for action, as
// the resource manager does before an API handler runs.
func (p *Portal) authorize(ctx context.Context, s *session, scope, action string) error {
	return p.cfg.RM.Authorize(ctx, s.ObjectID, scope, action, false)
}

// canRead reports whether the principal may do action at scope.
func (p *Portal) can(ctx context.Context, s *session, scope, action string) (bool, error) {
	return p.cfg.RM.HasRoleAt(ctx, s.ObjectID, scope, action, false)
}
