package compat_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"custody/keyvault"
	"custody/server"
	"custody/server/servertest"
)

// TestKeyTimesPast2262 checks that nbf and exp after 2262 (where Unix
// nanoseconds wrap) keep their meaning, read back as given, survive a
// restart of the store, and that values outside year 1970..9999 are refused.
func TestKeyTimesPast2262(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	MustGroup(t, ts, adminToken(t, ts), "rg-times")
	mustKeyVaultTB(t, ts, "rg-times", "kvtimes", adminObjectID(t, ts))
	c := keysClient(t, ts, "kvtimes", spCredential(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret))
	y2300 := time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)
	y9999 := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

	// nbf in 2300: the key exists but may not be used yet.
	late, err := c.CreateKey(ctx, "late", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr(int32(2048)),
		KeyAttributes: &azkeys.KeyAttributes{NotBefore: &y2300}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := late.Attributes.NotBefore; got == nil || !got.Equal(y2300) {
		t.Fatalf("nbf = %v, want %v", got, y2300)
	}
	_, err = c.WrapKey(ctx, "late", "", oaepParams(make([]byte, 32)), nil)
	wantKVError(t, "wrap before nbf 2300", err, 403, "Forbidden", "")

	// exp in 9999: usable now, and read back as given.
	long, err := c.CreateKey(ctx, "long", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr(int32(2048)),
		KeyAttributes: &azkeys.KeyAttributes{Expires: &y9999}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WrapKey(ctx, "long", "", oaepParams(make([]byte, 32)), nil); err != nil {
		t.Fatalf("wrap with exp 9999: %v", err)
	}
	got, err := c.GetKey(ctx, "long", long.Key.KID.Version(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if e := got.Attributes.Expires; e == nil || !e.Equal(y9999) {
		t.Fatalf("exp read back = %v, want %v", e, y9999)
	}

	// Out of range: refused with 400, nothing stored.
	tok := vaultToken(t, ts)
	for _, body := range []string{
		`{"kty":"RSA","attributes":{"exp":253402300800}}`,
		`{"kty":"RSA","attributes":{"nbf":9223372036854775807}}`,
		`{"kty":"RSA","attributes":{"nbf":-1}}`,
	} {
		r := kvRaw(t, ts, tok, "POST", "kvtimes", "/keys/bad/create?api-version=7.5", body)
		wantARMError(t, r, 400, "BadParameter")
		if !strings.Contains(string(r.Body), "out of range") {
			t.Errorf("%s: message does not say out of range: %s", body, r.Body)
		}
	}
	r := kvRaw(t, ts, tok, "PATCH", "kvtimes", "/keys/long/?api-version=7.5", `{"attributes":{"exp":99999999999999}}`)
	wantARMError(t, r, 400, "BadParameter")
}

// TestBatchQuotas checks the quotas the account's ARM resource reports are
// the ones enforced: poolQuota, activeJobAndJobScheduleQuota and the core
// quotas, and that huge node counts cannot wrap the per-pool node limit.
func TestBatchQuotas(t *testing.T) {
	ts := servertest.New(t, func(c *server.Config) { c.DisableLocalNodes = true })
	mustBatchAccount(t, ts, "rg-quota", "quota1")
	tok := batchToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret)
	const v = "?api-version=" + dataAPIVersion

	r := MustARM(t, ts, adminToken(t, ts), "GET", groupPath(ts, "rg-quota")+"/providers/Microsoft.Batch/batchAccounts/quota1?api-version=2024-07-01", "")
	wantStatus(t, r, 200)
	var acct struct {
		Properties struct {
			DedicatedCoreQuota           int `json:"dedicatedCoreQuota"`
			LowPriorityCoreQuota         int `json:"lowPriorityCoreQuota"`
			PoolQuota                    int `json:"poolQuota"`
			ActiveJobAndJobScheduleQuota int `json:"activeJobAndJobScheduleQuota"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(r.Body, &acct); err != nil {
		t.Fatal(err)
	}
	q := acct.Properties
	if q.PoolQuota < 2 || q.ActiveJobAndJobScheduleQuota < 1 || q.DedicatedCoreQuota < 16 {
		t.Fatalf("account reports quotas %+v", q)
	}

	// Node counts that would wrap when added are refused.
	r = batchRaw(t, ts, tok, "POST", "quota1", "/pools"+v,
		`{"id":"huge","vmSize":"standard_d2s_v3","targetDedicatedNodes":9223372036854775807,"targetLowPriorityNodes":9223372036854775807}`)
	wantBatchError(t, r, 400, "InvalidPropertyValue")

	// Dedicated cores: pools of 16-core nodes fill the quota; the pool that
	// passes it is held at what is left, with AccountCoreQuotaReached.
	per := min(64, q.DedicatedCoreQuota/16)
	pools := 0
	for left := q.DedicatedCoreQuota / 16; left > 0; left -= per {
		n := min(per, left)
		r = batchRaw(t, ts, tok, "POST", "quota1", "/pools"+v,
			fmt.Sprintf(`{"id":"big%d","vmSize":"standard_d16s_v3","targetDedicatedNodes":%d}`, pools, n))
		wantStatus(t, r, 201)
		pools++
	}
	r = batchRaw(t, ts, tok, "POST", "quota1", "/pools"+v, `{"id":"over","vmSize":"standard_d16s_v3","targetDedicatedNodes":2}`)
	wantStatus(t, r, 201)
	pools++
	r = batchRaw(t, ts, tok, "GET", "quota1", "/pools/over"+v, "")
	wantStatus(t, r, 200)
	var over struct {
		TargetDedicatedNodes int `json:"targetDedicatedNodes"`
		ResizeErrors         []struct {
			Code string `json:"code"`
		} `json:"resizeErrors"`
	}
	if err := json.Unmarshal(r.Body, &over); err != nil {
		t.Fatal(err)
	}
	if len(over.ResizeErrors) != 1 || over.ResizeErrors[0].Code != "AccountCoreQuotaReached" || over.TargetDedicatedNodes*16 > q.DedicatedCoreQuota%16+16 {
		t.Fatalf("pool over the core quota: %s", r.Body)
	}
	r = batchRaw(t, ts, tok, "POST", "quota1", "/pools/big0/resize"+v, `{"targetDedicatedNodes":64}`)
	wantStatus(t, r, 202)
	r = batchRaw(t, ts, tok, "GET", "quota1", "/pools/big0"+v, "")
	if !strings.Contains(string(r.Body), "AccountCoreQuotaReached") {
		t.Fatalf("resize over the core quota: %s", r.Body)
	}

	// Pools: up to poolQuota, then 409 PoolQuotaReached.
	for ; pools < q.PoolQuota; pools++ {
		r = batchRaw(t, ts, tok, "POST", "quota1", "/pools"+v, fmt.Sprintf(`{"id":"p%d","vmSize":"standard_a1_v2"}`, pools))
		wantStatus(t, r, 201)
	}
	r = batchRaw(t, ts, tok, "POST", "quota1", "/pools"+v, `{"id":"onemore","vmSize":"standard_a1_v2"}`)
	wantBatchError(t, r, 409, "PoolQuotaReached")

	// Active jobs: up to the quota, then 409; a terminated job frees a place.
	for i := 0; i < q.ActiveJobAndJobScheduleQuota; i++ {
		r = batchRaw(t, ts, tok, "POST", "quota1", "/jobs"+v, fmt.Sprintf(`{"id":"j%d","poolInfo":{"poolId":"p1"}}`, i))
		wantStatus(t, r, 201)
	}
	r = batchRaw(t, ts, tok, "POST", "quota1", "/jobs"+v, `{"id":"jmore","poolInfo":{"poolId":"p1"}}`)
	wantBatchError(t, r, 409, "ActiveJobAndScheduleQuotaReached")
	r = batchRaw(t, ts, tok, "POST", "quota1", "/jobs/j0/terminate"+v, "")
	wantStatus(t, r, 202, 204)
	waitFor(t, 10*time.Second, "job j0 completed", func() (bool, string) {
		r := batchRaw(t, ts, tok, "GET", "quota1", "/jobs/j0"+v, "")
		return strings.Contains(string(r.Body), `"state":"completed"`), string(r.Body)
	})
	r = batchRaw(t, ts, tok, "POST", "quota1", "/jobs"+v, `{"id":"jmore","poolInfo":{"poolId":"p1"}}`)
	wantStatus(t, r, 201)
}

// slowRequest opens a TLS connection to the server, sends head (a request
// line and headers) and part of a body, and returns how the server ended
// the exchange: what it answered before closing the connection. It fails
// the test if the server holds the connection past the client's own
// 20-second deadline.
func slowRequest(t *testing.T, ts *servertest.TestServer, head, partial string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", ts.Endpoint.Address, &tls.Config{RootCAs: ts.CAPool, ServerName: "login." + ts.Endpoint.Domain, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, head+partial); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server held a connection with an unfinished body for 20 s (read so far: %q)", got)
	}
	return string(got)
}

// TestSlowBodiesAndBodyLimits checks that a client that does not finish
// its body is cut off at the read timeout, with a 400 (never a 500) when
// the handler was reading it; that node long-polls held longer than the
// read timeout still succeed; and that bodies over a route's limit are
// refused with 413 naming it, before reading when Content-Length says so.
func TestSlowBodiesAndBodyLimits(t *testing.T) {
	t.Setenv(agentEnv, "1")
	ts := servertest.New(t, func(c *server.Config) {
		c.ReadTimeout = 500 * time.Millisecond
		c.NodeCommand = []string{os.Args[0], "node"}
		c.NodePoll = 1500 * time.Millisecond
	})
	host := "login." + ts.Endpoint.Domain
	// The token endpoint reads its form body before any authentication.
	got := slowRequest(t, ts, "POST /"+ts.Admin.TenantID+"/oauth2/v2.0/token HTTP/1.1\r\nHost: "+host+
		"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n", "grant_type=client_")
	if strings.Contains(got, " 500 ") {
		t.Fatalf("slow token body answered 500: %q", got)
	}
	// ARM answers 401 without reading the body; the unread rest must not
	// hold the connection either.
	slowRequest(t, ts, "PUT /subscriptions/"+ts.Admin.SubscriptionID+"/resourcegroups/slow?api-version=2021-04-01 HTTP/1.1\r\nHost: management."+
		ts.Endpoint.Domain+"\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n", `{"location":`)

	// Long-polls: a node's syncs are held 1.5 s, three times the read
	// timeout, and must all succeed.
	mustBatchAccount(t, ts, "rg-slow", "slow1")
	c := dataClient(t, ts, "slow1")
	mustPool(t, c, "p1", 1, 1)
	waitNodes(t, c, "p1", 1, "idle")
	nodeCalls := func() (ok, failed int) {
		mfs, err := ts.HTTP.Metrics().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "custody_http_requests_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				var service, code string
				for _, l := range m.GetLabel() {
					switch l.GetName() {
					case "service":
						service = l.GetValue()
					case "code":
						code = l.GetValue()
					}
				}
				if service != "nodes" {
					continue
				}
				if strings.HasPrefix(code, "2") {
					ok += int(m.GetCounter().GetValue())
				} else {
					failed += int(m.GetCounter().GetValue())
				}
			}
		}
		return ok, failed
	}
	start, _ := nodeCalls()
	waitFor(t, 30*time.Second, "three more node calls", func() (bool, string) {
		ok, failed := nodeCalls()
		return ok >= start+3, fmt.Sprintf("ok %d failed %d", ok, failed)
	})
	if _, failed := nodeCalls(); failed != 0 {
		t.Fatalf("%d node calls failed while long-polls outlasted the read timeout", failed)
	}
	if st := nodeStates(t, c, "p1"); len(st) != 1 || st[0] != "idle" {
		t.Fatalf("node states = %v, want [idle]", st)
	}

	// Body limits: addtaskcollection takes at most 1 MB, as in Azure.
	tok := batchToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret)
	r := batchRaw(t, ts, tok, "POST", "slow1", "/jobs?api-version="+dataAPIVersion, `{"id":"j1","poolInfo":{"poolId":"p1"}}`)
	wantStatus(t, r, 201)
	big := `{"value":[{"id":"t1","commandLine":"` + strings.Repeat("x", 1<<20) + `"}]}`
	r = batchRaw(t, ts, tok, "POST", "slow1", "/jobs/j1/addtaskcollection?api-version="+dataAPIVersion, big)
	e := wantBatchError(t, r, 413, "RequestBodyTooLarge")
	if e.Message != nil && !strings.Contains(e.Message.Value, "1048576") {
		t.Errorf("413 does not name the limit: %s", e.Message.Value)
	}
	// A declared Content-Length over the limit is refused before the body
	// is read: the server answers although the body never comes.
	got = slowRequest(t, ts, "POST /jobs/j1/addtaskcollection?api-version="+dataAPIVersion+" HTTP/1.1\r\nHost: slow1.batch."+ts.Endpoint.Domain+
		"\r\nAuthorization: Bearer "+tok+"\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n", `{"value":[`)
	if !strings.HasPrefix(got, "HTTP/1.1 413 ") || !strings.Contains(got, "RequestBodyTooLarge") {
		t.Fatalf("declared 50 MB body: %q", got)
	}
}

// TestLongNamesAndAuditRetention checks that over-long names and paths
// cost neither database nor log space: key names over 127 characters are
// refused before the audit log records them, logged paths are cut, request
// targets over the limit are refused, and audit records past the retention
// are swept.
func TestLongNamesAndAuditRetention(t *testing.T) {
	var logs syncBuffer
	var clock atomic.Int64 // hours added to the key vault's clock
	ts := servertest.New(t, func(c *server.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		c.AuditRetention = 24 * time.Hour
		c.KeyVaultClock = func() time.Time { return time.Now().Add(time.Duration(clock.Load()) * time.Hour) }
	})
	ctx := context.Background()
	MustGroup(t, ts, adminToken(t, ts), "rg-long")
	stranger := MustServicePrincipal(t, ts, "no-role")
	mustKeyVaultTB(t, ts, "rg-long", "kvlong", adminObjectID(t, ts))
	strangerTok := MustToken(t, ts, stranger.ClientID, stranger.Secret, "https://vault."+ts.Endpoint.Domain+":"+portOf(ts)+"/.default")

	long := strings.Repeat("k", 4000)
	for _, path := range []string{"/keys/" + long + "?api-version=7.5", "/keys/" + long + "/create?api-version=7.5", "/deletedkeys/" + long + "?api-version=7.5"} {
		r := kvRaw(t, ts, strangerTok, "GET", "kvlong", path, "")
		wantARMError(t, r, 400, "BadParameter")
	}
	recs, err := ts.KeyVault.ListAudit(ctx, keyvault.AuditFilter{VaultName: "kvlong", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		if len(rec.KeyName) > 130 || len(rec.VaultName) > 30 || len(rec.Version) > 40 {
			t.Fatalf("audit record keeps an over-long name: %d bytes", len(rec.KeyName)+len(rec.VaultName)+len(rec.Version))
		}
	}

	// An unauthenticated long path: refused, and logged cut short.
	r := MustDo(t, ts, "", "GET", "management", "/"+strings.Repeat("a", 6000), "")
	wantStatus(t, r, 401, 404)
	r = MustDo(t, ts, "", "GET", "management", "/"+strings.Repeat("b", 20000), "")
	wantARMError(t, r, 400, "RequestUriTooLong")
	// Far longer ones never reach a handler (HTTP/2 clients are told the
	// limit and do not send them at all).
	got := slowRequest(t, ts, "GET /"+strings.Repeat("c", 200000)+" HTTP/1.1\r\nHost: management."+ts.Endpoint.Domain+"\r\n\r\n", "")
	if !strings.HasPrefix(got, "HTTP/1.1 431 ") {
		t.Fatalf("200 kB request target: %.100q", got)
	}
	for _, line := range strings.Split(string(logs.Bytes()), "\n") {
		if len(line) > 2000 {
			t.Fatalf("a log line is %d bytes long: %.300s...", len(line), line)
		}
	}

	// Retention: a record older than a day goes at the next sweep; a new
	// one stays.
	kc := keysClient(t, ts, "kvlong", spCredential(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret))
	if _, err := kc.CreateKey(ctx, "old", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeEC), Curve: to.Ptr(azkeys.CurveNameP256)}, nil); err != nil {
		t.Fatal(err)
	}
	clock.Store(25)
	if _, err := kc.GetKey(ctx, "old", "", nil); err != nil {
		t.Fatal(err)
	}
	ts.KeyVault.FlushAudit()
	if err := ts.KeyVault.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	recs, err = ts.KeyVault.ListAudit(ctx, keyvault.AuditFilter{VaultName: "kvlong", KeyName: "old"})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Operation != "KeyGet" {
		var ops []string
		for _, r := range recs {
			ops = append(ops, r.Operation)
		}
		t.Fatalf("audit records of key old after the sweep: %v, want only the recent get", ops)
	}
}

// TestShutdownEndsLongPollsQuietly checks that a shutdown answers the node
// syncs it finds held at once, so it finishes in time, and that nothing is
// logged as an error or answered 500 on the way.
func TestShutdownEndsLongPollsQuietly(t *testing.T) {
	t.Setenv(agentEnv, "1")
	logs := &syncBuffer{}
	ts := servertest.New(t, func(c *server.Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.NodeCommand = []string{os.Args[0], "node"}
		c.NodePoll = time.Minute // longer than the shutdown's 10-second grace
	})
	mustBatchAccount(t, ts, "rg-stop", "stop1")
	c := dataClient(t, ts, "stop1")
	mustPool(t, c, "p1", 1, 1)
	waitNodes(t, c, "p1", 1, "idle")
	start := time.Now()
	if err := ts.Stop(); err != nil {
		t.Fatalf("shutdown with a node long-poll held: %v", err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	for _, line := range strings.Split(string(logs.Bytes()), "\n") {
		if strings.Contains(line, "level=ERROR") || strings.Contains(line, "status=500") {
			t.Errorf("logged at shutdown: %s", line)
		}
	}
}

// TestMetricsOnlyOnTheirOwnListener checks that /metrics is not served on
// the public hosts, and is on --metrics-listen.
func TestMetricsOnlyOnTheirOwnListener(t *testing.T) {
	ts := servertest.New(t, func(c *server.Config) { c.MetricsListen = "127.0.0.1:0" })
	for _, host := range []string{"management", "login", "", "kv1.vault", "acct.batch", "portal"} {
		r := MustDo(t, ts, "", "GET", host, "/metrics", "")
		if r.Status == 200 || strings.Contains(string(r.Body), "custody_http_requests_total") {
			t.Errorf("/metrics on %q answered %d: %.200s", host, r.Status, r.Body)
		}
	}
	addr := ts.MetricsAddr()
	if addr == "" {
		t.Fatal("no metrics listener")
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "custody_http_requests_total") {
		t.Fatalf("metrics listener: %d %.300s", resp.StatusCode, b)
	}
	resp2, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != 404 {
		t.Errorf("metrics listener serves /healthz: %d", resp2.StatusCode)
	}

	// Without --metrics-listen there is no metrics listener at all.
	if a := servertest.New(t, nil).MetricsAddr(); a != "" {
		t.Errorf("metrics served on %s by default", a)
	}
}

// TestLocationsAndBatchAPIVersion checks that locations must name Azure
// regions (display names accepted and stored as names) for every resource
// kind, and that the batch data plane checks api-version as the other
// planes do.
func TestLocationsAndBatchAPIVersion(t *testing.T) {
	ts := servertest.New(t, nil)
	tok := adminToken(t, ts)
	r := MustARM(t, ts, tok, "PUT", groupPath(ts, "rg-loc")+"?api-version="+rgAPIVersion, `{"location":"West US 2"}`)
	wantStatus(t, r, 200, 201)
	if !strings.Contains(string(r.Body), `"location":"westus2"`) {
		t.Errorf("display name not stored as the region name: %s", r.Body)
	}
	r = MustARM(t, ts, tok, "PUT", groupPath(ts, "rg-mars")+"?api-version="+rgAPIVersion, `{"location":"marsnorth"}`)
	wantARMError(t, r, 400, "LocationNotAvailableForResourceGroup")
	for _, c := range []struct{ path, body string }{
		{identityPath(ts, "rg-loc", "id1") + "?api-version=" + miAPIVersion, `{"location":"atlantis"}`},
		{groupPath(ts, "rg-loc") + "/providers/Microsoft.KeyVault/vaults/kvloc?api-version=2024-11-01",
			`{"location":"atlantis","properties":{"tenantId":"` + ts.Admin.TenantID + `","sku":{"family":"A","name":"standard"},"accessPolicies":[]}}`},
		{groupPath(ts, "rg-loc") + "/providers/Microsoft.Batch/batchAccounts/batchloc?api-version=2024-07-01", `{"location":"atlantis"}`},
	} {
		r = MustARM(t, ts, tok, "PUT", c.path, c.body)
		wantARMError(t, r, 400, "LocationNotAvailableForResourceType")
	}

	mustBatchAccount(t, ts, "rg-loc", "apiv1")
	btok := batchToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret)
	wantBatchError(t, batchRaw(t, ts, btok, "GET", "apiv1", "/jobs", ""), 400, "MissingRequiredQueryParameter")
	for _, v := range []string{"1999-01-01", "2024-07-01", "latest"} {
		wantBatchError(t, batchRaw(t, ts, btok, "GET", "apiv1", "/jobs?api-version="+v, ""), 400, "InvalidQueryParameterValue")
	}
	for _, v := range []string{dataAPIVersion, "2024-02-01.19.0", "2025-06-01"} {
		wantStatus(t, batchRaw(t, ts, btok, "GET", "apiv1", "/jobs?api-version="+v, ""), 200)
	}
}
