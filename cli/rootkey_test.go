package cli_test

import (
	"path/filepath"
	"strings"
	"testing"

	"custody/hsm/hsmtest"
)

// TestRootKeyCommands: init makes the key in the token once; bad flags
// are refused with a message saying what to give.
func TestRootKeyCommands(t *testing.T) {
	dir := t.TempDir()
	uri := hsmtest.Token(t)
	if r := run(t, dir, "", "root-key", "init", "--root-key", uri); r.code != 0 || !strings.Contains(r.stderr, `Created root key "custody-root"`) || strings.Contains(r.stderr, hsmtest.PIN) {
		t.Fatalf("init: %d %s", r.code, r.stderr)
	}
	if r := run(t, dir, "", "root-key", "init", "--root-key", uri); r.code != 0 || !strings.Contains(r.stderr, "kept it") {
		t.Fatalf("second init: %d %s", r.code, r.stderr)
	}
	mustFail(t, dir, "ERROR: --root-key \"/some/file\" is not a PKCS#11 URI", "root-key", "init", "--root-key", "/some/file")
	mustFail(t, dir, "ERROR: the PKCS#11 URI names no module", "root-key", "init", "--root-key", "pkcs11:token=x;object=y?pin-value=1")
	mustFail(t, dir, "ERROR: give both --from and --to", "root-key", "migrate", "--to", uri)
	out := mustFail(t, dir, "ERROR: no PKCS#11 token matches", "root-key", "init", "--root-key", strings.Replace(uri, "token=", "token=absent-", 1))
	if strings.Contains(out, hsmtest.PIN) {
		t.Fatalf("an error shows the PIN: %s", out)
	}
	// A migration from a key file that does not exist is refused.
	r := run(t, dir, "", "root-key", "migrate", "--from", filepath.Join(t.TempDir(), "new.key"), "--to", uri)
	if r.code == 0 {
		t.Fatalf("migration from a missing file succeeded: %s", r.stderr)
	}
}
