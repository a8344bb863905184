package httpapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"custody"
	"custody/batch"
)

// Shared Key authentication of the batch data plane, as Azure Batch
// verifies it ("Authenticate requests to Azure Batch"):
//
//	Authorization: SharedKey {account}:{base64(HMAC-SHA256(key, StringToSign))}
//
// where StringToSign is the verb, the values of Content-Encoding,
// Content-Language, Content-Length (empty when 0), Content-MD5,
// Content-Type, Date, If-Modified-Since, If-Match, If-None-Match,
// If-Unmodified-Since and Range, each followed by a newline; then each
// ocp-* header as "name:value\n" (names lower-cased, sorted); then
// "/{account}{path}" with the path as sent; then "\n{name}:{value}" for
// each query parameter (names lower-cased and sorted, values decoded,
// several values sorted and joined by commas, empty ones left out).
//
// The key is either of the account's two keys (batch.Service keeps them
// sealed). The request's time (ocp-date, else Date) must be within
// SharedKeyClockSkew of the server's clock, which bounds replays to that
// window, as in Azure. A request authenticated this way has full
// data-plane access to that one account and nothing else: it passes no
// RBAC check (its caller has no object id, so it holds no role anywhere:
// no management-plane rights, no other account, no identity it could
// attach to a pool).

// SharedKeyClockSkew is how far a signed request's time may be from the
// server's clock.
const SharedKeyClockSkew = 15 * time.Minute

// sharedKeyHeaders are the standard headers of the string to sign, in order.
var sharedKeyHeaders = []string{"Content-Encoding", "Content-Language", "Content-Length", "Content-MD5", "Content-Type",
	"Date", "If-Modified-Since", "If-Match", "If-None-Match", "If-Unmodified-Since", "Range"}

// SharedKeyStringToSign is the string a client signs for a request to
// account, from what it sends: method, headers and the request target
// (path and query as sent).
func SharedKeyStringToSign(method, account string, h http.Header, target string) string {
	return stringToSign(method, account, h, target, false)
}

// stringToSign is SharedKeyStringToSign; zeroLength keeps a Content-Length
// of 0 as "0" instead of empty.
func stringToSign(method, account string, h http.Header, target string, zeroLength bool) string {
	var b strings.Builder
	b.WriteString(method)
	b.WriteByte('\n')
	for _, name := range sharedKeyHeaders {
		v := strings.Join(h.Values(name), ",")
		if name == "Content-Length" && v == "0" && !zeroLength {
			v = ""
		}
		b.WriteString(v)
		b.WriteByte('\n')
	}
	var ocp []string
	for name := range h {
		if strings.HasPrefix(strings.ToLower(name), "ocp-") {
			ocp = append(ocp, name)
		}
	}
	sort.Slice(ocp, func(i, j int) bool { return strings.ToLower(ocp[i]) < strings.ToLower(ocp[j]) })
	for _, name := range ocp {
		v := strings.Join(h.Values(name), ",")
		if v == "" {
			continue
		}
		b.WriteString(strings.ToLower(name) + ":" + v + "\n")
	}
	path, rawQuery, _ := strings.Cut(target, "?")
	b.WriteString("/" + account + path)
	q, _ := url.ParseQuery(rawQuery)
	params := map[string][]string{}
	for name, vs := range q {
		n := strings.ToLower(name)
		for _, v := range vs {
			if v != "" {
				params[n] = append(params[n], v)
			}
		}
	}
	names := make([]string, 0, len(params))
	for n := range params {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		vs := params[n]
		sort.Strings(vs)
		b.WriteString("\n" + n + ":" + strings.Join(vs, ","))
	}
	return b.String()
}

// SharedKeySignature is base64(HMAC-SHA256(key, stringToSign)).
func SharedKeySignature(key []byte, stringToSign string) string {
	return base64.StdEncoding.EncodeToString(sharedKeyMAC(key, stringToSign))
}

func sharedKeyMAC(key []byte, s string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return m.Sum(nil)
}

// isSharedKey reports whether the request's Authorization header uses the
// SharedKey scheme.
func isSharedKey(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	const prefix = "sharedkey "
	return len(h) > len(prefix) && equalFoldASCII(h[:len(prefix)], prefix)
}

// authDetailError is an authentication failure of the batch data plane
// with Azure's AuthenticationErrorDetail.
type authDetailError struct {
	err    *custody.Error
	detail string
}

func (e *authDetailError) Error() string { return e.err.Error() + " (" + e.detail + ")" }
func (e *authDetailError) Unwrap() error { return e.err }

// authFailed is Azure Batch's 403 AuthenticationFailed with a detail.
func authFailed(format string, args ...any) error {
	return &authDetailError{
		err: custody.Errorf(custody.KindForbidden, "AuthenticationFailed",
			"Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature."),
		detail: fmt.Sprintf(format, args...),
	}
}

// modeNotAllowed is the refusal of a request whose authentication mode the
// account does not allow.
func modeNotAllowed(mode string) error {
	return authFailed("The specified type of authentication %s is not allowed for this account.", mode)
}

// sharedKeyTarget is the request target as the client sent it.
func sharedKeyTarget(r *http.Request) string {
	t := r.RequestURI
	if !strings.HasPrefix(t, "/") {
		// Absolute form: keep the path and query.
		if u, err := url.Parse(t); err == nil {
			t = u.EscapedPath()
			if u.RawQuery != "" {
				t += "?" + u.RawQuery
			}
		}
	}
	return t
}

// verifySharedKey authenticates a SharedKey request to account a and
// returns it with the account's shared-key caller in its context.
func (b *batchData) verifySharedKey(r *http.Request, name string) (*http.Request, *batch.Account, error) {
	h := r.Header.Get("Authorization")
	cred := strings.TrimSpace(h[len("SharedKey "):])
	claimed, sig, ok := strings.Cut(cred, ":")
	mac, err := base64.StdEncoding.DecodeString(sig)
	if !ok || claimed == "" || err != nil || len(mac) != sha256.Size {
		return nil, nil, custody.Errorf(custody.KindUnauthenticated, "AuthenticationFailed",
			"Authentication failed. The 'Authorization' header is malformed; send 'Authorization: SharedKey {account}:{signature}' with a base64 HMAC-SHA256 signature, or 'Authorization: Bearer <token>'.")
	}
	if !strings.EqualFold(claimed, name) {
		return nil, nil, authFailed("The account name '%s' in the Authorization header is not the account of this endpoint.", clipPath(claimed))
	}
	acct, err := b.accounts.Account(r.Context(), name)
	if custody.IsNotFound(err) {
		// No existence oracle: an unknown account fails like a bad signature.
		return nil, nil, authFailed("The MAC signature found in the HTTP request is not the same as any computed signature.")
	}
	if err != nil {
		return nil, nil, err
	}
	if !acct.Allows(batch.AuthModeSharedKey) {
		return nil, nil, modeNotAllowed(batch.AuthModeSharedKey)
	}
	date := r.Header.Get("ocp-date")
	if date == "" {
		date = r.Header.Get("Date")
	}
	if date == "" {
		return nil, nil, authFailed("Request date header not specified: send ocp-date (or Date) with the time of the request.")
	}
	at, err := http.ParseTime(date)
	if err != nil {
		return nil, nil, authFailed("The request date '%s' is not a valid HTTP date (RFC 1123, for example 'Mon, 02 Jan 2006 15:04:05 GMT').", clipPath(date))
	}
	now := time.Now()
	if at.Before(now.Add(-SharedKeyClockSkew)) {
		return nil, nil, authFailed("Request date header too old: '%s'. A signed request must reach the server within %d minutes of its date.", date, int(SharedKeyClockSkew/time.Minute))
	}
	if at.After(now.Add(SharedKeyClockSkew)) {
		return nil, nil, authFailed("Request date header too far in the future: '%s'. Check the client's clock.", date)
	}
	target := sharedKeyTarget(r)
	hdr := r.Header.Clone()
	if hdr.Get("Content-Length") == "" && r.ContentLength > 0 {
		hdr.Set("Content-Length", strconv.FormatInt(r.ContentLength, 10))
	}
	variants := sharedKeyVariants(r.Method, claimed, hdr, target)
	ok, err = b.accounts.VerifySharedKey(r.Context(), acct, mac, func(key []byte) [][]byte {
		out := make([][]byte, len(variants))
		for i, v := range variants {
			out[i] = sharedKeyMAC(key, v)
		}
		return out
	})
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, authFailed("The MAC signature found in the HTTP request '%s' is not the same as any computed signature. Server used following string to sign: '%s'.", sig, clip(variants[0], 2048))
	}
	setCallerLog(r, "SharedKey:"+acct.Name)
	caller := custody.Caller{Issuer: "SharedKey", AppID: acct.Name, Audience: "https://" + r.Host}
	return r.WithContext(custody.WithCaller(r.Context(), caller)), acct, nil
}

// sharedKeyVariants are the strings to sign the clients in use produce for
// one request: the documented one first; then the forms of Azure's own
// clients that differ from it only in how they spell the same request (az's
// Python client signs "0" for an empty body's Content-Length, and "/" for
// the %2F and %5C it sends in a path; a Date sent beside ocp-date may be
// signed empty, as documented, or as sent).
func sharedKeyVariants(method, account string, h http.Header, target string) []string {
	hs := []http.Header{h}
	if h.Get("ocp-date") != "" && h.Get("Date") != "" {
		d := h.Clone()
		d.Del("Date")
		hs = append(hs, d)
	}
	zero := []bool{false}
	if cl := h.Get("Content-Length"); cl == "" || cl == "0" {
		zero = append(zero, true)
	}
	targets := []string{target}
	path, query, hasQuery := strings.Cut(target, "?")
	if p := strings.NewReplacer("%2F", "/", "%5C", "/").Replace(path); p != path {
		if hasQuery {
			p += "?" + query
		}
		targets = append(targets, p)
	}
	var out []string
	for _, t := range targets {
		for _, x := range hs {
			for _, z := range zero {
				s := stringToSign(method, account, x, t, z)
				if !slices.Contains(out, s) {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
