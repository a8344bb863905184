package identity_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"custody"
)

// FuzzVerify feeds the token verifier arbitrary bearer tokens. It must
// never panic, must refuse with an unauthenticated *custody.Error, and
// must accept only tokens the authority signed (the seeds' valid token).
func FuzzVerify(f *testing.F) {
	c := &clock{t: time.Now()}
	a := MustAuthority(f, c)
	p := testPrincipal()
	valid := MustSign(f, a, p, testIssuer, "https://management.azure.com")
	parts := strings.Split(valid, ".")
	for _, s := range []string{
		valid, "", ".", "..", "a.b.c", valid + ".", parts[0] + "." + parts[1] + ".",
		"eyJhbGciOiJub25lIn0." + parts[1] + ".",
		"eyJhbGciOiJIUzI1NiJ9." + parts[1] + "." + parts[2],
		"eyJhbGciOiJSUzI1NiIsImtpZCI6IiJ9." + parts[1] + "." + parts[2],
		strings.Repeat("A", 500<<10),
		parts[0] + "." + "eyJuYmYiOjEwNDE0MzY4MDAwLCJleHAiOjEwNDE0MzY4MDAwfQ" + "." + parts[2], // nbf/exp in 2300
		parts[0] + "." + "eyJleHAiOjkyMjMzNzIwMzY4NTQ3NzU4MDd9" + "." + parts[2],               // exp 2^63-1
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		cl, err := a.Verify(raw, testExpectation)
		if err == nil {
			if raw != valid {
				t.Fatalf("Verify accepted a token the authority did not sign: %q", raw)
			}
			if cl.ObjectID != p.ObjectID {
				t.Fatalf("Verify returned oid %q, want %q", cl.ObjectID, p.ObjectID)
			}
			return
		}
		var ce *custody.Error
		if !errors.As(err, &ce) || ce.Kind != custody.KindUnauthenticated {
			t.Fatalf("Verify(%q) = %v, want an unauthenticated *custody.Error", raw, err)
		}
	})
}
