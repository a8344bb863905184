package compat_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/batch/armbatch/v3"

	"custody/batch"
	"custody/rm"
	"custody/server"
	"custody/server/servertest"
)

// sharedKeySigner is a client-side Shared Key policy for azbatch, written
// from Azure's documentation and the signing code of Azure's Python batch
// client (azbatch for Go has no shared-key credential): it sets ocp-date
// and signs the request with the account's key.
type sharedKeySigner struct {
	account string
	key     string
	// at, if set, is the request time to claim (default: now).
	at func() time.Time
}

func (p *sharedKeySigner) Do(req *policy.Request) (*http.Response, error) {
	r := req.Raw()
	at := time.Now()
	if p.at != nil {
		at = p.at()
	}
	r.Header.Set("ocp-date", at.UTC().Format(http.TimeFormat))
	r.Header.Set("Authorization", signSharedKey(r, p.account, p.key))
	return req.Next()
}

// signSharedKey returns the Authorization header for r.
func signSharedKey(r *http.Request, account, key string) string {
	h := func(name string) string { return r.Header.Get(name) }
	cl := h("Content-Length")
	if cl == "" && r.ContentLength > 0 {
		cl = strconv.FormatInt(r.ContentLength, 10)
	}
	if cl == "0" {
		cl = ""
	}
	s := r.Method + "\n" + h("Content-Encoding") + "\n" + h("Content-Language") + "\n" + cl + "\n" + h("Content-MD5") + "\n" +
		h("Content-Type") + "\n" + h("Date") + "\n" + h("If-Modified-Since") + "\n" + h("If-Match") + "\n" + h("If-None-Match") + "\n" +
		h("If-Unmodified-Since") + "\n" + h("Range") + "\n"
	var ocp []string
	for name := range r.Header {
		if l := strings.ToLower(name); strings.HasPrefix(l, "ocp-") {
			ocp = append(ocp, l+":"+r.Header.Get(name)+"\n")
		}
	}
	sort.Strings(ocp)
	s += strings.Join(ocp, "") + "/" + account + r.URL.EscapedPath()
	q := r.URL.Query()
	names := make([]string, 0, len(q))
	for n := range q {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if v := q.Get(n); v != "" {
			s += "\n" + strings.ToLower(n) + ":" + v
		}
	}
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		panic("shared key is not base64: " + err.Error())
	}
	m := hmac.New(sha256.New, raw)
	m.Write([]byte(s))
	return "SharedKey " + account + ":" + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// noToken satisfies azbatch.NewClient; the shared-key policy replaces the
// bearer header it would send.
type noToken struct{}

func (noToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "unused", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// sharedKeyClient is an azbatch client for account name that signs with
// key (signing as account signer, which is name unless given).
func sharedKeyClient(tb testing.TB, ts *servertest.TestServer, name string, p *sharedKeySigner) *azbatch.Client {
	tb.Helper()
	c, err := azbatch.NewClient(batchEndpoint(ts, name), noToken{}, &azbatch.ClientOptions{ClientOptions: policy.ClientOptions{
		Transport: ts.Client, PerRetryPolicies: []policy.Policy{p}, Retry: policy.RetryOptions{MaxRetries: -1}}})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// signedRequest is a GET of the account's jobs signed with key at time at.
func signedRequest(tb testing.TB, ts *servertest.TestServer, account, key string, at time.Time) *http.Request {
	tb.Helper()
	req, err := http.NewRequest("GET", batchEndpoint(ts, account)+"/jobs?api-version="+dataAPIVersion+"&maxresults=10", nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("ocp-date", at.UTC().Format(http.TimeFormat))
	req.Header.Set("Authorization", signSharedKey(req, account, key))
	return req
}

// batchAuthDetail returns the code and AuthenticationErrorDetail of a
// batch error body.
func batchAuthDetail(tb testing.TB, body []byte) (code, detail string) {
	tb.Helper()
	var e struct {
		Code   string `json:"code"`
		Values []struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		} `json:"values"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		tb.Fatalf("batch error body %s: %v", body, err)
	}
	for _, v := range e.Values {
		if v.Key == "AuthenticationErrorDetail" {
			detail = v.Value
		}
	}
	return e.Code, detail
}

func wantAuthFailed(tb testing.TB, r response, detail string) {
	tb.Helper()
	code, d := batchAuthDetail(tb, r.Body)
	if r.Status != http.StatusForbidden || code != "AuthenticationFailed" || !strings.Contains(d, detail) {
		tb.Fatalf("got %d %s (%q), want 403 AuthenticationFailed with a detail containing %q: %s", r.Status, code, d, detail, r.Body)
	}
}

// TestSharedKey drives Shared Key authentication end to end: keys from
// listKeys (armbatch), real data-plane operations signed with either key
// (azbatch), refusals of bad, expired, replayed and misdirected signatures,
// rotation, disabled modes, a locked account, RBAC on the keys, and no key
// in the database or the log.
func TestSharedKey(t *testing.T) {
	logs := &syncBuffer{}
	ts := servertest.New(t, func(c *server.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	ctx := context.Background()
	createGroup(t, ts, "rg1")
	arm := batchClient(t, ts)
	mustCreateAccount(t, arm, "rg1", "skacct", armbatch.AccountCreateParameters{})
	mustCreateAccount(t, arm, "rg1", "other", armbatch.AccountCreateParameters{})

	seen := map[string]string{} // every key handed out, by name
	listKeys := func(name string) armbatch.AccountKeys {
		t.Helper()
		res, err := arm.GetKeys(ctx, "rg1", name, nil)
		if err != nil {
			t.Fatalf("listKeys %s: %v", name, err)
		}
		k := res.AccountKeys
		if str(k.AccountName) != name || len(str(k.Primary)) != 88 || len(str(k.Secondary)) != 88 || *k.Primary == *k.Secondary {
			t.Fatalf("listKeys %s = %+v, want the account name and two distinct 88-character keys", name, k)
		}
		seen[name+" primary "+*k.Primary] = *k.Primary
		seen[name+" secondary "+*k.Secondary] = *k.Secondary
		return k
	}
	keys := listKeys("skacct")
	if again := listKeys("skacct"); *again.Primary != *keys.Primary {
		t.Fatal("listKeys answered a different primary key the second time")
	}
	otherKeys := listKeys("other")

	t.Run("GoodSignature", func(t *testing.T) {
		for _, key := range []string{*keys.Primary, *keys.Secondary} {
			c := sharedKeyClient(t, ts, "skacct", &sharedKeySigner{account: "skacct", key: key})
			id := "job-" + key[:6]
			id = strings.NewReplacer("+", "x", "/", "y").Replace(id)
			if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr(id), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("pool-1")}}, nil); err != nil {
				t.Fatalf("create job with a shared key: %v", err)
			}
			if _, err := c.CreateTask(ctx, id, azbatch.CreateTaskContent{ID: to.Ptr("t1"), CommandLine: to.Ptr("echo hi")}, nil); err != nil {
				t.Fatalf("create task with a shared key: %v", err)
			}
			pager := c.NewListTasksPager(id, nil)
			page, err := pager.NextPage(ctx)
			if err != nil || len(page.Value) != 1 || str(page.Value[0].ID) != "t1" {
				t.Fatalf("list tasks with a shared key = %v, %v", page.Value, err)
			}
			if _, err := c.GetJob(ctx, id, nil); err != nil {
				t.Fatalf("get job: %v", err)
			}
		}
	})

	t.Run("BadSignature", func(t *testing.T) {
		wrong := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 64))
		c := sharedKeyClient(t, ts, "skacct", &sharedKeySigner{account: "skacct", key: wrong})
		_, err := c.GetJob(ctx, "any", nil)
		wantResponseError(t, err, http.StatusForbidden, "AuthenticationFailed")
		r := MustSend(t, ts, signedRequest(t, ts, "skacct", wrong, time.Now()))
		wantAuthFailed(t, r, "is not the same as any computed signature")

		// A signed request whose query is changed afterwards.
		req := signedRequest(t, ts, "skacct", *keys.Primary, time.Now())
		req.URL.RawQuery = strings.Replace(req.URL.RawQuery, "maxresults=10", "maxresults=11", 1)
		wantAuthFailed(t, MustSend(t, ts, req), "is not the same as any computed signature")

		// Malformed or missing header: 401 as for a missing token.
		for _, h := range []string{"SharedKey skacct", "SharedKey skacct:not-base64!", "SharedKey :" + base64.StdEncoding.EncodeToString(make([]byte, 32))} {
			req := signedRequest(t, ts, "skacct", *keys.Primary, time.Now())
			req.Header.Set("Authorization", h)
			if r := MustSend(t, ts, req); r.Status != http.StatusUnauthorized {
				t.Errorf("Authorization %q: %d %s, want 401", h, r.Status, r.Body)
			}
		}
	})

	t.Run("ExpiredAndReplayed", func(t *testing.T) {
		for _, skew := range []time.Duration{-16 * time.Minute, 16 * time.Minute, -24 * time.Hour} {
			c := sharedKeyClient(t, ts, "skacct", &sharedKeySigner{account: "skacct", key: *keys.Primary, at: func() time.Time { return time.Now().Add(skew) }})
			_, err := c.GetJob(ctx, "any", nil)
			wantResponseError(t, err, http.StatusForbidden, "AuthenticationFailed")
		}
		// Within the window the clock may differ.
		c := sharedKeyClient(t, ts, "skacct", &sharedKeySigner{account: "skacct", key: *keys.Primary, at: func() time.Time { return time.Now().Add(-10 * time.Minute) }})
		if _, err := c.NewListJobsPager(nil).NextPage(ctx); err != nil {
			t.Fatalf("a request 10 minutes old: %v", err)
		}
		// A request captured 16 minutes ago, sent again now.
		old := signedRequest(t, ts, "skacct", *keys.Primary, time.Now().Add(-16*time.Minute))
		wantAuthFailed(t, MustSend(t, ts, old), "Request date header too old")
		// Without any date.
		req := signedRequest(t, ts, "skacct", *keys.Primary, time.Now())
		req.Header.Del("ocp-date")
		req.Header.Set("Authorization", signSharedKey(req, "skacct", *keys.Primary))
		wantAuthFailed(t, MustSend(t, ts, req), "date header not specified")
	})

	t.Run("OtherAccountAndPlane", func(t *testing.T) {
		// The other account's key, named as this account.
		wantAuthFailed(t, MustSend(t, ts, signedRequest(t, ts, "skacct", *otherKeys.Primary, time.Now())), "is not the same as any computed signature")
		// A signature of the other account sent to this account's host.
		req := signedRequest(t, ts, "skacct", *otherKeys.Primary, time.Now())
		req.Header.Set("Authorization", signSharedKey(req, "other", *otherKeys.Primary))
		wantAuthFailed(t, MustSend(t, ts, req), "is not the account of this endpoint")
		// An unknown account answers like a bad signature.
		req, _ = http.NewRequest("GET", batchEndpoint(ts, "nosuchacct")+"/jobs?api-version="+dataAPIVersion, nil)
		req.Header.Set("ocp-date", time.Now().UTC().Format(http.TimeFormat))
		req.Header.Set("Authorization", signSharedKey(req, "nosuchacct", *keys.Primary))
		wantAuthFailed(t, MustSend(t, ts, req), "is not the same as any computed signature")
		// A shared key is no management-plane credential.
		req, _ = http.NewRequest("POST", ts.URL("management")+batchAccountPath(ts, "rg1", "skacct")+"/listKeys?api-version="+batchAPIVersion, nil)
		req.Header.Set("ocp-date", time.Now().UTC().Format(http.TimeFormat))
		req.Header.Set("Authorization", signSharedKey(req, "skacct", *keys.Primary))
		if r := MustSend(t, ts, req); r.Status != http.StatusUnauthorized {
			t.Fatalf("listKeys signed with a shared key: %d %s, want 401", r.Status, r.Body)
		}
	})

	t.Run("AzPythonForms", func(t *testing.T) {
		// az's Python client signs Content-Length "0" for a POST without a
		// body, and "/" for an encoded slash it sends in a path.
		c := sharedKeyClient(t, ts, "skacct", &sharedKeySigner{account: "skacct", key: *keys.Primary})
		if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("pyjob"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("pool-1")}}, nil); err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("POST", batchEndpoint(ts, "skacct")+"/jobs/pyjob/terminate?api-version="+dataAPIVersion, http.NoBody)
		req.ContentLength = 0
		req.Header.Set("Content-Length", "0")
		req.Header.Set("ocp-date", time.Now().UTC().Format(http.TimeFormat))
		req.Header.Set("Authorization", signPython(req, "skacct", *keys.Primary))
		if r := MustSend(t, ts, req); r.Status >= 300 {
			t.Fatalf("POST with Content-Length 0 signed as az does: %d %s", r.Status, r.Body)
		}
	})

	t.Run("Rotation", func(t *testing.T) {
		res, err := arm.RegenerateKey(ctx, "rg1", "skacct", armbatch.AccountRegenerateKeyParameters{KeyName: to.Ptr(armbatch.AccountKeyTypePrimary)}, nil)
		if err != nil {
			t.Fatalf("regenerate primary: %v", err)
		}
		rotated := res.AccountKeys
		seen["rotated primary"] = *rotated.Primary
		if *rotated.Primary == *keys.Primary || *rotated.Secondary != *keys.Secondary {
			t.Fatalf("after regenerating the primary key: primary changed %v, secondary kept %v", *rotated.Primary != *keys.Primary, *rotated.Secondary == *keys.Secondary)
		}
		old := sharedKeyClient(t, ts, "skacct", &sharedKeySigner{account: "skacct", key: *keys.Primary})
		_, err = old.NewListJobsPager(nil).NextPage(ctx)
		wantResponseError(t, err, http.StatusForbidden, "AuthenticationFailed")
		for _, key := range []string{*rotated.Primary, *keys.Secondary} {
			c := sharedKeyClient(t, ts, "skacct", &sharedKeySigner{account: "skacct", key: key})
			if _, err := c.NewListJobsPager(nil).NextPage(ctx); err != nil {
				t.Fatalf("list jobs with a current key: %v", err)
			}
		}
		if l := listKeys("skacct"); *l.Primary != *rotated.Primary {
			t.Fatal("listKeys does not answer the regenerated key")
		}
		// Regenerate accepts only Primary and Secondary.
		r := MustARM(t, ts, adminToken(t, ts), "POST", batchAccountPath(ts, "rg1", "skacct")+"/regenerateKeys?api-version="+batchAPIVersion, `{"keyName":"Tertiary"}`)
		wantARMError(t, r, http.StatusBadRequest, "")
		keys = listKeys("skacct")
	})

	t.Run("RBAC", func(t *testing.T) {
		reader := MustServicePrincipal(t, ts, "reader")
		contributor := MustServicePrincipal(t, ts, "contributor")
		admin := adminToken(t, ts)
		MustAssign(t, ts, admin, groupPath(ts, "rg1"), rm.RoleReader, reader.ObjectID)
		MustAssign(t, ts, admin, batchAccountPath(ts, "rg1", "skacct"), rm.RoleContributor, contributor.ObjectID)
		path := batchAccountPath(ts, "rg1", "skacct")
		for _, op := range []string{"/listKeys", "/regenerateKeys"} {
			r := MustARM(t, ts, MustToken(t, ts, reader.ClientID, reader.Secret, armScope), "POST", path+op+"?api-version="+batchAPIVersion, `{"keyName":"Secondary"}`)
			wantARMError(t, r, http.StatusForbidden, "AuthorizationFailed")
			if bytes.Contains(r.Body, []byte(*keys.Primary)) {
				t.Fatal("the refusal shows the key")
			}
		}
		r := MustARM(t, ts, MustToken(t, ts, contributor.ClientID, contributor.Secret, armScope), "POST", path+"/listKeys?api-version="+batchAPIVersion, "")
		wantStatus(t, r, http.StatusOK)
		// The contributor's role is on skacct only.
		r = MustARM(t, ts, MustToken(t, ts, contributor.ClientID, contributor.Secret, armScope), "POST", batchAccountPath(ts, "rg1", "other")+"/listKeys?api-version="+batchAPIVersion, "")
		wantARMError(t, r, http.StatusForbidden, "AuthorizationFailed")
	})

	t.Run("Modes", func(t *testing.T) {
		setModes := func(modes ...armbatch.AuthenticationMode) {
			t.Helper()
			ms := []*armbatch.AuthenticationMode{}
			for i := range modes {
				ms = append(ms, &modes[i])
			}
			res, err := arm.Update(ctx, "rg1", "skacct", armbatch.AccountUpdateParameters{Properties: &armbatch.AccountUpdateProperties{AllowedAuthenticationModes: ms}}, nil)
			if err != nil {
				t.Fatalf("set allowedAuthenticationModes: %v", err)
			}
			if got := res.Properties.AllowedAuthenticationModes; len(got) != len(modes) {
				t.Fatalf("allowedAuthenticationModes = %v, want %v", got, modes)
			}
		}
		skc := sharedKeyClient(t, ts, "skacct", &sharedKeySigner{account: "skacct", key: *keys.Primary})
		aad := dataClient(t, ts, "skacct")

		setModes(armbatch.AuthenticationModeAAD)
		_, err := arm.GetKeys(ctx, "rg1", "skacct", nil)
		wantResponseError(t, err, http.StatusBadRequest, "SharedKeyAuthenticationModeDisabled")
		_, err = arm.RegenerateKey(ctx, "rg1", "skacct", armbatch.AccountRegenerateKeyParameters{KeyName: to.Ptr(armbatch.AccountKeyTypeSecondary)}, nil)
		wantResponseError(t, err, http.StatusBadRequest, "SharedKeyAuthenticationModeDisabled")
		wantAuthFailed(t, MustSend(t, ts, signedRequest(t, ts, "skacct", *keys.Primary, time.Now())), "SharedKey is not allowed for this account")
		if _, err := aad.NewListJobsPager(nil).NextPage(ctx); err != nil {
			t.Fatalf("Entra ID token with AAD allowed: %v", err)
		}

		setModes(armbatch.AuthenticationModeSharedKey)
		if _, err := skc.NewListJobsPager(nil).NextPage(ctx); err != nil {
			t.Fatalf("shared key with SharedKey allowed again: %v", err)
		}
		_, err = aad.NewListJobsPager(nil).NextPage(ctx)
		wantResponseError(t, err, http.StatusForbidden, "AuthenticationFailed")

		setModes(armbatch.AuthenticationModeSharedKey, armbatch.AuthenticationModeAAD, armbatch.AuthenticationModeTaskAuthenticationToken)
		r := MustARM(t, ts, adminToken(t, ts), "PATCH", batchAccountPath(ts, "rg1", "skacct")+"?api-version="+batchAPIVersion, `{"properties":{"allowedAuthenticationModes":["Password"]}}`)
		wantARMError(t, r, http.StatusBadRequest, "InvalidAuthenticationMode")
	})

	t.Run("LockedAccount", func(t *testing.T) {
		a, err := ts.Batch.Account(ctx, "skacct")
		if err != nil {
			t.Fatal(err)
		}
		k := a.Key
		k.State, k.Reason = batch.KeyInaccessible, "test: key disabled"
		if err := ts.Batch.Accounts.UpdateKeyState(ctx, "skacct", k); err != nil {
			t.Fatal(err)
		}
		c := sharedKeyClient(t, ts, "skacct", &sharedKeySigner{account: "skacct", key: *keys.Primary})
		_, err = c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("locked"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("pool-1")}}, nil)
		wantResponseError(t, err, http.StatusConflict, "AccountKeyInaccessible")
		_, err = c.NewListJobsPager(nil).NextPage(ctx)
		wantResponseError(t, err, http.StatusConflict, "AccountKeyInaccessible")
		k.State, k.Reason = batch.KeyAvailable, ""
		if err := ts.Batch.Accounts.UpdateKeyState(ctx, "skacct", k); err != nil {
			t.Fatal(err)
		}
		if _, err := c.NewListJobsPager(nil).NextPage(ctx); err != nil {
			t.Fatalf("after unlocking: %v", err)
		}
	})

	t.Run("NotAtRest", func(t *testing.T) {
		needles := map[string][]byte{}
		for name, k := range seen {
			raw, err := base64.StdEncoding.DecodeString(k)
			if err != nil {
				t.Fatal(err)
			}
			needles[name+" (base64)"] = []byte(k)
			needles[name+" (bytes)"] = raw
			needles[name+" (base64 prefix)"] = []byte(k[:24])
		}
		scan := func(when string) {
			haystacks := map[string][]byte{"server log": logs.Bytes()}
			entries, err := os.ReadDir(ts.DataDir())
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if e.IsDir() || e.Name() == server.AdminFile {
					continue
				}
				b, err := os.ReadFile(filepath.Join(ts.DataDir(), e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				haystacks[e.Name()] = b
			}
			if _, ok := haystacks["custody.db"]; !ok {
				t.Fatalf("%s: no custody.db in the data directory", when)
			}
			for hn, h := range haystacks {
				for nn, n := range needles {
					if bytes.Contains(h, n) {
						t.Errorf("%s: %s contains the %s key", when, hn, nn)
					}
				}
			}
		}
		if !bytes.Contains(logs.Bytes(), []byte("SharedKey:skacct")) {
			t.Error("the log does not name the shared-key caller of data-plane requests")
		}
		scan("while running")
		ts.Close()
		scan("after shutdown")
	})
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// signPython signs r as azure-batch's Python SharedKeyAuth (the client of
// az) does: every header it carries, Content-Length "0" included, and the
// path with %2F and %5C turned into "/".
func signPython(r *http.Request, account, key string) string {
	names := []string{"content-encoding", "content-language", "content-length", "content-md5", "content-type", "date",
		"if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range"}
	s := r.Method + "\n"
	for _, n := range names {
		s += r.Header.Get(n) + "\n"
	}
	var ocp []string
	for name := range r.Header {
		if l := strings.ToLower(name); strings.Contains(l, "ocp-") {
			ocp = append(ocp, l+":"+r.Header.Get(name)+"\n")
		}
	}
	sort.Strings(ocp)
	path := strings.NewReplacer("%5C", "/", "%2F", "/").Replace(r.URL.EscapedPath())
	s += strings.Join(ocp, "") + "/" + account + path
	q, _ := url.ParseQuery(r.URL.RawQuery)
	qn := make([]string, 0, len(q))
	for n := range q {
		qn = append(qn, n)
	}
	sort.Strings(qn)
	for _, n := range qn {
		if v := q[n][0]; v != "" {
			s += "\n" + n + ":" + v
		}
	}
	raw, _ := base64.StdEncoding.DecodeString(key)
	m := hmac.New(sha256.New, raw)
	m.Write([]byte(s))
	return "SharedKey " + account + ":" + base64.StdEncoding.EncodeToString(m.Sum(nil))
}
