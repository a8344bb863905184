package httpapi

import "testing"

func TestResolveAPIVersions(t *testing.T) {
	cases := []struct {
		name    string
		resolve func(string) (string, bool)
		asked   string
		served  string // "" means refused
	}{
		{"arm known", func(v string) (string, bool) { return resolveARMVersion(resourcesAPIVersions, v) }, "2019-11-01", "2019-11-01"},
		{"arm newer", func(v string) (string, bool) { return resolveARMVersion(resourcesAPIVersions, v) }, "2026-02-01", "2025-04-01"},
		{"arm newer preview", func(v string) (string, bool) { return resolveARMVersion(msiAPIVersions, v) }, "2026-01-31-preview", "2024-11-30"},
		{"arm unpublished", func(v string) (string, bool) { return resolveARMVersion(resourcesAPIVersions, v) }, "2019-11-02", ""},
		{"arm too old", func(v string) (string, bool) { return resolveARMVersion(resourcesAPIVersions, v) }, "2013-01-01", ""},
		{"arm no date", func(v string) (string, bool) { return resolveARMVersion(resourcesAPIVersions, v) }, "2026-02-30", ""},
		{"arm malformed", func(v string) (string, bool) { return resolveARMVersion(resourcesAPIVersions, v) }, "v2026", ""},
		{"arm any", func(v string) (string, bool) { return resolveARMVersion(allVersions(), v) }, "whatever", "whatever"},
		{"vault 7.4", resolveVaultVersion, "7.4", "7.4"},
		{"vault 7.7", resolveVaultVersion, "7.7", "2025-07-01"},
		{"vault 8.0-preview", resolveVaultVersion, "8.0-preview", "2025-07-01"},
		{"vault dated newer", resolveVaultVersion, "2026-03-01", "2025-07-01"},
		{"vault 6.0", resolveVaultVersion, "6.0", ""},
		{"vault 7.5-preview.9", resolveVaultVersion, "7.5-preview.9", ""},
		{"vault empty", resolveVaultVersion, "", ""},
		{"batch known", resolveBatchDataVersion, "2022-10-01.16.0", "2022-10-01.16.0"},
		{"batch newer", resolveBatchDataVersion, "2026-01-01.21.0", "2025-06-01"},
		{"batch newer dated", resolveBatchDataVersion, "2026-01-01", "2025-06-01"},
		{"batch too old", resolveBatchDataVersion, "2014-10-01.1.0", ""},
		{"batch malformed", resolveBatchDataVersion, "2026-01-01.x", ""},
		{"metadata newer", func(v string) (string, bool) { return resolveARMVersion(metadataAPIVersions, v) }, "2023-01-01", "2022-09-01"},
	}
	for _, c := range cases {
		got, ok := c.resolve(c.asked)
		if c.served == "" && ok {
			t.Errorf("%s: %q served as %q, want a refusal", c.name, c.asked, got)
		}
		if c.served != "" && (!ok || got != c.served) {
			t.Errorf("%s: %q -> %q, %v; want %q", c.name, c.asked, got, ok, c.served)
		}
	}
}
