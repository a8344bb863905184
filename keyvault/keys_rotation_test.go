package keyvault

import (
	"encoding/json"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	t0 := time.Date(2025, 1, 31, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"P90D":    t0.AddDate(0, 0, 90),
		"P1Y":     t0.AddDate(1, 0, 0),
		"p2m":     t0.AddDate(0, 2, 0),
		"P1W":     t0.AddDate(0, 0, 7),
		"P1DT12H": t0.AddDate(0, 0, 1).Add(12 * time.Hour),
		"PT30M5S": t0.Add(30*time.Minute + 5*time.Second),
		"P1Y2M3D": t0.AddDate(1, 2, 3),
	} {
		d, err := parseDuration(in)
		if err != nil {
			t.Fatalf("parseDuration(%q) = %v", in, err)
		}
		if got := d.addTo(t0); !got.Equal(want) {
			t.Fatalf("parseDuration(%q) added to %s = %s, want %s", in, t0, got, want)
		}
	}
	for _, in := range []string{"", "P", "PT", "90D", "P-1D", "P1.5D", "P1DT", "P99999999999D", "PT1D"} {
		if _, err := parseDuration(in); err == nil {
			t.Fatalf("parseDuration(%q) = nil error, want BadParameter", in)
		}
	}
}

func policy(t *testing.T, s string) *KeyRotationPolicy {
	t.Helper()
	var p KeyRotationPolicy
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

func TestValidatePolicy(t *testing.T) {
	p, err := validatePolicy(policy(t, `{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P30D"},"action":{"type":"rotate"}}],"attributes":{"expiryTime":"P90D"}}`))
	if err != nil {
		t.Fatalf("validatePolicy = %v", err)
	}
	if len(p.LifetimeActions) != 2 || p.LifetimeActions[0].Action != "Rotate" || p.LifetimeActions[1] != (LifetimeAction{TimeBeforeExpiry: "P30D", Action: "Notify"}) {
		t.Fatalf("policy = %+v, want Rotate then the default Notify", p.LifetimeActions)
	}
	for name, s := range map[string]string{
		"too soon":          `{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P6D"},"action":{"type":"Rotate"}}]}`,
		"both triggers":     `{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P30D","timeBeforeExpiry":"P30D"},"action":{"type":"Rotate"}}]}`,
		"no trigger":        `{"lifetimeActions":[{"action":{"type":"Rotate"}}]}`,
		"bad type":          `{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P30D"},"action":{"type":"Explode"}}]}`,
		"two rotates":       `{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P30D"},"action":{"type":"Rotate"}},{"trigger":{"timeAfterCreate":"P40D"},"action":{"type":"Rotate"}}]}`,
		"before no expiry":  `{"lifetimeActions":[{"trigger":{"timeBeforeExpiry":"P30D"},"action":{"type":"Rotate"}}]}`,
		"short expiry":      `{"lifetimeActions":[],"attributes":{"expiryTime":"P7D"}}`,
		"after past expiry": `{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P100D"},"action":{"type":"Rotate"}}],"attributes":{"expiryTime":"P90D"}}`,
		"bad duration":      `{"lifetimeActions":[{"trigger":{"timeAfterCreate":"thirty days"},"action":{"type":"Rotate"}}]}`,
	} {
		if _, err := validatePolicy(policy(t, s)); err == nil {
			t.Fatalf("%s: validatePolicy = nil, want an error", name)
		}
	}
}

func TestRotationDue(t *testing.T) {
	created := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	exp := created.AddDate(0, 0, 90)
	kv := &KeyVersion{CreatedAt: created, Expires: &exp}
	due, ok := rotationDue(&RotationPolicy{LifetimeActions: []LifetimeAction{{TimeAfterCreate: "P30D", Action: "Rotate"}}}, kv)
	if !ok || !due.Equal(created.AddDate(0, 0, 30)) {
		t.Fatalf("timeAfterCreate due = %s, %v", due, ok)
	}
	due, ok = rotationDue(&RotationPolicy{LifetimeActions: []LifetimeAction{{TimeBeforeExpiry: "P10D", Action: "Rotate"}}}, kv)
	if !ok || !due.Equal(exp.AddDate(0, 0, -10)) {
		t.Fatalf("timeBeforeExpiry due = %s, %v", due, ok)
	}
	if _, ok := rotationDue(&RotationPolicy{LifetimeActions: []LifetimeAction{{TimeBeforeExpiry: "P30D", Action: "Notify"}}}, kv); ok {
		t.Fatal("a Notify-only policy is due for rotation")
	}
}

func TestRecoveryLevel(t *testing.T) {
	for _, c := range []struct {
		days  int
		pp    bool
		level string
	}{{0, false, "Purgeable"}, {90, false, "Recoverable+Purgeable"}, {90, true, "Recoverable"}, {7, false, "CustomizedRecoverable+Purgeable"}, {30, true, "CustomizedRecoverable"}} {
		level, days := RecoveryLevel(&Vault{SoftDeleteRetentionDays: c.days, EnablePurgeProtection: c.pp})
		if level != c.level || days != c.days {
			t.Fatalf("RecoveryLevel(%d days, purge protection %v) = %s/%d, want %s/%d", c.days, c.pp, level, days, c.level, c.days)
		}
	}
}
