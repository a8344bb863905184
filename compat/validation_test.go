package compat_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"custody/server/servertest"
)

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
