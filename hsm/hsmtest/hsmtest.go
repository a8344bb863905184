// Package hsmtest makes SoftHSM2 tokens for tests: each call initialises a
// fresh token with softhsm2-util in a token directory of the test process's
// own (SOFTHSM2_CONF), and returns a PKCS#11 URI for it. Without SoftHSM2 a
// test is skipped, except under CI, where it fails.
package hsmtest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Module is where Debian's softhsm2 package puts the PKCS#11 library.
const Module = "/usr/lib/softhsm/libsofthsm2.so"

// PIN is the user PIN of every test token.
const PIN = "4711-custody"

var (
	once    sync.Once
	confErr error
)

// setup points SOFTHSM2_CONF at a token directory of this process's own,
// once: the module reads it when first loaded, and child processes inherit
// it.
func setup() error {
	once.Do(func() {
		if os.Getenv("CUSTODY_TEST_SOFTHSM2_CONF_SET") == "1" && os.Getenv("SOFTHSM2_CONF") != "" {
			return // a child process of a test: use its parent's tokens
		}
		dir, err := os.MkdirTemp("", "custody-softhsm-")
		if err != nil {
			confErr = err
			return
		}
		tokens := filepath.Join(dir, "tokens")
		if err := os.Mkdir(tokens, 0o700); err != nil {
			confErr = err
			return
		}
		conf := filepath.Join(dir, "softhsm2.conf")
		if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"), 0o600); err != nil {
			confErr = err
			return
		}
		os.Setenv("SOFTHSM2_CONF", conf)
		os.Setenv("CUSTODY_TEST_SOFTHSM2_CONF_SET", "1")
	})
	return confErr
}

// Available reports whether SoftHSM2 is installed; without it a test skips,
// or fails under CI.
func need(t testing.TB) {
	t.Helper()
	_, err1 := os.Stat(Module)
	_, err2 := exec.LookPath("softhsm2-util")
	if err1 != nil || err2 != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("SoftHSM2 is missing (apt-get install softhsm2): %v %v", err1, err2)
		}
		t.Skip("SoftHSM2 is not installed (apt-get install softhsm2)")
	}
}

// Token initialises a new token and returns a PKCS#11 URI naming it, with
// object label "custody-root" and the PIN inline.
func Token(t testing.TB) string {
	t.Helper()
	need(t)
	if err := setup(); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	label := "custody-test-" + hex.EncodeToString(b)
	out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", PIN+"-so").CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	return fmt.Sprintf("pkcs11:token=%s;object=custody-root?module-path=%s&pin-value=%s", label, Module, PIN)
}
