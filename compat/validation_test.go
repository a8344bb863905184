package compat_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"
	"software.sslmate.com/src/go-pkcs12"

	"custody/server/servertest"
)

// selfSignedPFX returns a PKCS#12 file holding a new key and its
// self-signed certificate for cn, encrypted with password (by enc, or
// pkcs12.Modern when nil), and the certificate's SHA-1 thumbprint.
func selfSignedPFX(tb testing.TB, cn, password string, enc *pkcs12.Encoder) ([]byte, string) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	if enc == nil {
		enc = pkcs12.Modern
	}
	pfx, err := enc.Encode(key, cert, nil, password)
	if err != nil {
		tb.Fatal(err)
	}
	sum := sha1.Sum(der)
	return pfx, hex.EncodeToString(sum[:])
}

// tagsJSON returns a JSON object of n tags named prefix0, prefix1, ...
func tagsJSON(n int, prefix string) string {
	m := map[string]string{}
	for i := range n {
		m[fmt.Sprintf("%s%d", prefix, i)] = "v"
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// TestARMTagLimits checks ARM's tag limits (at most 50 tags, names of at
// most 512 characters without <>%&\?/, values of at most 256 characters) on
// every resource that takes tags, on PUT and on PATCH, and that tags at the
// limits are accepted.
func TestARMTagLimits(t *testing.T) {
	ts := servertest.New(t, nil)
	tok := adminToken(t, ts)
	MustGroup(t, ts, tok, "rg-tags")
	MustIdentity(t, ts, tok, "rg-tags", "idtags")
	vaultPath := groupPath(ts, "rg-tags") + "/providers/Microsoft.KeyVault/vaults/kvtags?api-version=2024-11-01"
	vaultProps := `"properties":{"tenantId":"` + ts.Admin.TenantID + `","sku":{"family":"A","name":"standard"},"accessPolicies":[]}`
	wantStatus(t, MustARM(t, ts, tok, "PUT", vaultPath, `{"location":"westus2",`+vaultProps+`}`), 200, 201)
	batchPath := groupPath(ts, "rg-tags") + "/providers/Microsoft.Batch/batchAccounts/batchtags?api-version=2024-07-01"
	wantStatus(t, MustARM(t, ts, tok, "PUT", batchPath, `{"location":"westus2"}`), 200, 201, 202)

	type target struct {
		method, path string
		body         func(tags string) string
	}
	targets := []target{
		{"PUT", groupPath(ts, "rg-tags2") + "?api-version=" + rgAPIVersion, func(tags string) string { return `{"location":"westus2","tags":` + tags + `}` }},
		{"PUT", identityPath(ts, "rg-tags", "idtags2") + "?api-version=" + miAPIVersion, func(tags string) string { return `{"location":"westus2","tags":` + tags + `}` }},
		{"PATCH", identityPath(ts, "rg-tags", "idtags") + "?api-version=" + miAPIVersion, func(tags string) string { return `{"tags":` + tags + `}` }},
		{"PUT", vaultPath, func(tags string) string { return `{"location":"westus2","tags":` + tags + `,` + vaultProps + `}` }},
		{"PATCH", vaultPath, func(tags string) string { return `{"tags":` + tags + `}` }},
		{"PUT", groupPath(ts, "rg-tags") + "/providers/Microsoft.Batch/batchAccounts/batchtags2?api-version=2024-07-01", func(tags string) string { return `{"location":"westus2","tags":` + tags + `}` }},
		{"PUT", batchPath, func(tags string) string { return `{"location":"westus2","tags":` + tags + `}` }},
		{"PATCH", batchPath, func(tags string) string { return `{"tags":` + tags + `}` }},
	}
	long := func(n int) string { return strings.Repeat("a", n) }
	bad := []struct{ tags, code string }{
		{tagsJSON(51, "t"), "InvalidTag"},
		{`{"` + long(513) + `":"v"}`, "InvalidTagName"},
		{`{"ok":"` + long(257) + `"}`, "InvalidTagValueLength"},
		{`{"":"v"}`, "InvalidTagName"},
	}
	for _, c := range `<>%&\?/` {
		name := "a" + string(c) + "b"
		if c == '\\' {
			name = `a\\b`
		}
		bad = append(bad, struct{ tags, code string }{`{"` + name + `":"v"}`, "InvalidTagNameCharacters"})
	}
	bad = append(bad, struct{ tags, code string }{`{"a\u0001b":"v"}`, "InvalidTagNameCharacters"})
	for _, tg := range targets {
		for _, b := range bad {
			r := MustARM(t, ts, tok, tg.method, tg.path, tg.body(b.tags))
			if r.Status != 400 {
				t.Errorf("%s %s with tags %.80s: status %d, want 400: %s", tg.method, tg.path, b.tags, r.Status, r.Body)
				continue
			}
			wantARMError(t, r, 400, b.code)
		}
		// At the limits: 50 tags, one with a 512-character name and a
		// 256-character value.
		m := map[string]string{}
		for i := range 49 {
			m[fmt.Sprintf("t%d", i)] = "v"
		}
		m[long(512)] = long(256)
		at, _ := json.Marshal(m)
		r := MustARM(t, ts, tok, tg.method, tg.path, tg.body(string(at)))
		wantStatus(t, r, 200, 201, 202)
	}
	// An over-long name is not echoed whole.
	r := MustARM(t, ts, tok, "PUT", groupPath(ts, "rg-tags3")+"?api-version="+rgAPIVersion, `{"location":"westus2","tags":{"`+long(100000)+`":"v"}}`)
	wantARMError(t, r, 400, "InvalidTagName")
	if len(r.Body) > 1000 {
		t.Errorf("error body of %d bytes echoes the tag name", len(r.Body))
	}
}

// TestVaultPropertyEnums checks that a vault's PUT and PATCH refuse values
// outside Azure's enums and formats (networkAcls, publicNetworkAccess, sku,
// createMode) with 400 BadRequest naming the property and the allowed
// values, and accept the valid ones in any case, stored in Azure's spelling.
func TestVaultPropertyEnums(t *testing.T) {
	ts := servertest.New(t, nil)
	tok := adminToken(t, ts)
	MustGroup(t, ts, tok, "rg-enums")
	path := groupPath(ts, "rg-enums") + "/providers/Microsoft.KeyVault/vaults/kvenums?api-version=2024-11-01"
	base := `"tenantId":"` + ts.Admin.TenantID + `","sku":{"family":"A","name":"standard"},"accessPolicies":[]`
	put := func(props string) response {
		return MustARM(t, ts, tok, "PUT", path, `{"location":"westus2","properties":{`+base+props+`}}`)
	}
	patch := func(props string) response {
		return MustARM(t, ts, tok, "PATCH", path, `{"properties":{`+strings.TrimPrefix(props, ",")+`}}`)
	}
	wantStatus(t, put(""), 200, 201)

	subnet := "/subscriptions/" + ts.Admin.SubscriptionID + "/resourceGroups/rg-net/providers/Microsoft.Network/virtualNetworks/vnet1/subnets/default"
	bad := []struct{ props, field, allowed string }{
		{`,"publicNetworkAccess":"Maybe"`, "publicNetworkAccess", "Enabled, Disabled"},
		{`,"publicNetworkAccess":"SecuredByPerimeter"`, "publicNetworkAccess", "Enabled, Disabled"},
		{`,"networkAcls":{"defaultAction":"Sideways"}`, "defaultAction", "Allow, Deny"},
		{`,"networkAcls":{"bypass":"Everything"}`, "bypass", "AzureServices, None"},
		{`,"networkAcls":{"ipRules":[{"value":"999.1.1.1/99"}]}`, "IP rule 0", "IPv4"},
		{`,"networkAcls":{"ipRules":[{"value":"10.0.0.0/8"},{"value":"2001:db8::/32"}]}`, "IP rule 1", "IPv4"},
		{`,"networkAcls":{"ipRules":[{"value":"example.com"}]}`, "IP rule 0", "IPv4"},
		{`,"networkAcls":{"virtualNetworkRules":[{"id":"https://evil.example/x"}]}`, "Virtual network rule 0", "subnets"},
		{`,"networkAcls":{"virtualNetworkRules":[{"id":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v"}]}`, "Virtual network rule 0", "subnets"},
		{`,"sku":{"family":"B","name":"standard"}`, "family", `use \"A\"`},
		{`,"sku":{"family":"A","name":"basic"}`, "sku", "premium"},
		{`,"createMode":"overwrite"`, "createMode", "recover"},
	}
	for _, b := range bad {
		for _, r := range []response{put(b.props), patch(b.props)} {
			wantARMError(t, r, 400, "BadRequest")
			if !strings.Contains(string(r.Body), b.field) || !strings.Contains(string(r.Body), b.allowed) {
				t.Errorf("%s: message does not name %q and %q: %s", b.props, b.field, b.allowed, r.Body)
			}
		}
	}

	good := `,"publicNetworkAccess":"disabled","networkAcls":{"defaultAction":"deny","bypass":"azureservices",` +
		`"ipRules":[{"value":"203.0.113.7"},{"value":"198.51.100.0/24"}],"virtualNetworkRules":[{"id":"` + subnet + `"}]}`
	for _, r := range []response{put(good), patch(good)} {
		wantStatus(t, r, 200)
		var v struct {
			Properties struct {
				PublicNetworkAccess string `json:"publicNetworkAccess"`
				NetworkACLs         struct {
					DefaultAction, Bypass string
					IPRules               []struct{ Value string }
					VirtualNetworkRules   []struct{ ID string }
				} `json:"networkAcls"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(r.Body, &v); err != nil {
			t.Fatal(err)
		}
		p := v.Properties
		if p.PublicNetworkAccess != "Disabled" || p.NetworkACLs.DefaultAction != "Deny" || p.NetworkACLs.Bypass != "AzureServices" ||
			len(p.NetworkACLs.IPRules) != 2 || len(p.NetworkACLs.VirtualNetworkRules) != 1 || p.NetworkACLs.VirtualNetworkRules[0].ID != subnet {
			t.Errorf("valid network properties not kept in Azure's spelling: %s", r.Body)
		}
	}
}

// TestBatchCertificateData checks that certificate data is parsed and its
// thumbprint checked: pfx data is opened with its password (go-pkcs12), cer
// data is DER or PEM X.509, the SHA-1 of the certificate must equal the
// thumbprint (any case), and the public part is returned for both formats.
func TestBatchCertificateData(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	mustBatchAccount(t, ts, "rg-certs", "certacct")
	c := dataClient(t, ts, "certacct")
	add := func(tp, format, password string, data []byte) error {
		cert := azbatch.Certificate{Thumbprint: to.Ptr(tp), ThumbprintAlgorithm: to.Ptr("sha1"),
			Data: to.Ptr(base64.StdEncoding.EncodeToString(data)), Format: to.Ptr(azbatch.CertificateFormat(format))}
		if password != "" {
			cert.Password = to.Ptr(password)
		}
		_, err := c.CreateCertificate(ctx, cert, nil)
		return err
	}

	pfx, tp := selfSignedPFX(t, "pfx-ok", "s3cret", nil)
	legacy, legacyTP := selfSignedPFX(t, "pfx-legacy", "s3cret", pkcs12.LegacyDES)
	other, _ := selfSignedPFX(t, "pfx-other", "s3cret", nil)
	der, cerTP := selfSignedCert(t, "cer-pem")
	pemData := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})

	wantSDKError(t, "pfx bytes that are no pfx", add(tp, "pfx", "s3cret", []byte("pfx bytes")), 400, "InvalidCertificateData")
	wantSDKError(t, "pfx with a wrong password", add(tp, "pfx", "wrong", pfx), 400, "InvalidCertificatePassword")
	wantSDKError(t, "pfx of another certificate", add(tp, "pfx", "s3cret", other), 400, "CertificateThumbprintMismatch")
	wantSDKError(t, "pfx given as cer", add(tp, "cer", "", pfx), 400, "InvalidCertificateData")
	wantSDKError(t, "cer with a wrong thumbprint", add(tp, "cer", "", pemData), 400, "CertificateThumbprintMismatch")
	wantSDKError(t, "pem that is no certificate", add(cerTP, "cer", "", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), 400, "InvalidCertificateData")
	slow, slowTP := selfSignedPFX(t, "pfx-slow", "s3cret", pkcs12.Modern.WithIterations(1<<20+1))
	start := time.Now()
	wantSDKError(t, "pfx asking for too many iterations", add(slowTP, "pfx", "s3cret", slow), 400, "InvalidCertificateData")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("refusing a pfx with too many iterations took %v", d)
	}

	if err := add(strings.ToUpper(tp), "pfx", "s3cret", pfx); err != nil {
		t.Fatalf("add pfx: %v", err)
	}
	if err := add(legacyTP, "pfx", "s3cret", legacy); err != nil {
		t.Fatalf("add legacy (3DES) pfx: %v", err)
	}
	if err := add(cerTP, "cer", "", pemData); err != nil {
		t.Fatalf("add PEM cer: %v", err)
	}
	for _, want := range []struct {
		tp  string
		der []byte
	}{{tp, nil}, {cerTP, der}} {
		g, err := c.GetCertificate(ctx, "sha1", want.tp, nil)
		if err != nil {
			t.Fatalf("get certificate %s: %v", want.tp, err)
		}
		if g.PublicData == nil || g.Data != nil || g.Password != nil {
			t.Errorf("certificate %s = %s; want its public data and never its data or password", want.tp, mustJSON(g.Certificate))
			continue
		}
		pub, _ := base64.StdEncoding.DecodeString(*g.PublicData)
		sum := sha1.Sum(pub)
		if hex.EncodeToString(sum[:]) != want.tp || (want.der != nil && string(pub) != string(want.der)) {
			t.Errorf("public data of %s is not the certificate's DER", want.tp)
		}
	}
}
