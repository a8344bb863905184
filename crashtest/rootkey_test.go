package crashtest_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"custody/hsm"
	"custody/hsm/hsmtest"
	"custody/secret"
)

// custody runs the custody command line as a child process and returns
// its output.
func custody(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// migrateKilled starts `custody root-key migrate --verbose` with its
// standard output on a pipe of one page, reads a few of the lines it
// prints for each secret it re-seals, stops reading (the process then
// blocks inside its transaction as the pipe fills) and kills it with
// SIGKILL. It fails the test if the migration ended on its own.
func migrateKilled(t *testing.T, dir, from, to string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := unix.FcntlInt(r.Fd(), unix.F_SETPIPE_SZ, 4096); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(os.Args[0], "root-key", "migrate", "--data-dir", dir, "--from", from, "--to", to, "--verbose")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stdout, cmd.Stderr = w, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	sc := bufio.NewScanner(r)
	for i := 0; i < 20; i++ {
		if !sc.Scan() {
			cmd.Wait()
			t.Fatalf("the migration printed %d lines and stopped: %s", i, stderr.String())
		}
	}
	time.Sleep(300 * time.Millisecond) // it is blocked on the full pipe by now
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("the migration was not killed in the middle (it ended: %v): %s", cmd.ProcessState, stderr.String())
	}
}

// secrets are what the server must read back after each root key change.
type secrets struct {
	sharedKeys string // the batch account's shared keys, as listKeys answers
	token      string // an access token signed with the signing key
	wrapped    []byte // 32 bytes wrapped with the vault's RSA key
	plain      []byte
	job        string
}

func (p *proc) checkSecrets(t *testing.T, s *secrets, keys int) {
	t.Helper()
	sub := "/subscriptions/" + p.sub + "/resourceGroups/" + p.rg
	// The signing key: a token issued before the change is still good.
	req, _ := newRequest("GET", p.url("management")+sub+"?api-version=2021-04-01", s.token)
	resp, err := p.client.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("a token signed before the root key change: %v %v", err, resp)
	}
	resp.Body.Close()
	// Shared keys.
	got := p.arm("POST", sub+"/providers/Microsoft.Batch/batchAccounts/rkacct/listKeys", "2024-07-01", "", 200)
	if string(got.body) != s.sharedKeys {
		t.Fatalf("shared keys changed: %s, want %s", got.body, s.sharedKeys)
	}
	// Platform key ring: the account's DEK opens the job.
	var job struct {
		DisplayName string `json:"displayName"`
	}
	p.must("GET", p.url("rkacct.batch")+"/jobs/job1?api-version="+batchAPI, batchScope, "", 200).decode(t, &job)
	if job.DisplayName != s.job {
		t.Fatalf("job display name %q, want %q", job.DisplayName, s.job)
	}
	// Vault key material: the RSA key unwraps, every EC key signs.
	kv := p.url("rkkv.vault")
	var res struct {
		Value string `json:"value"`
	}
	p.must("POST", kv+"/keys/rsa/unwrapkey?api-version=7.5", vaultScope, `{"alg":"RSA-OAEP-256","value":"`+base64.RawURLEncoding.EncodeToString(s.wrapped)+`"}`, 200).decode(t, &res)
	if res.Value != base64.RawURLEncoding.EncodeToString(s.plain) {
		t.Fatal("the vault's RSA key unwrapped another value")
	}
	d := sha256.Sum256([]byte("root key migration"))
	for i := 0; i < keys; i += 37 {
		p.must("POST", fmt.Sprintf("%s/keys/ec-%03d/sign?api-version=7.5", kv, i), vaultScope, `{"alg":"ES256","value":"`+base64.RawURLEncoding.EncodeToString(d[:])+`"}`, 200)
	}
}

// TestRootKeyMigrationSurvivesSIGKILL moves a server's secrets from a file
// root key to a PKCS#11 token (SoftHSM2) and back to a new file, killing
// each migration with SIGKILL in the middle of its transaction: after each
// kill the server still reads everything under the old root key, and the
// migration run again finishes; the server on the token restarts and reads
// everything, and the sealing key derived in the token appears in neither
// the data directory, the server's environment nor its log.
func TestRootKeyMigrationSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills server and migration processes")
	}
	uri := hsmtest.Token(t)
	if out, err := custody(t, "root-key", "init", "--root-key", uri); err != nil || !strings.Contains(out, "Created root key") {
		t.Fatalf("root-key init: %v\n%s", err, out)
	}
	if out, err := custody(t, "root-key", "init", "--root-key", uri); err != nil || !strings.Contains(out, "kept it") {
		t.Fatalf("second root-key init: %v\n%s", err, out)
	}

	p := &proc{t: t, dir: t.TempDir(), port: freePort(t), rg: "rg-rootkey"}
	p.start()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.kill()
		}
	})
	sub := "/subscriptions/" + p.sub + "/resourceGroups/" + p.rg
	p.arm("PUT", sub, "2021-04-01", `{"location":"westus2"}`, 201)
	vault := fmt.Sprintf(`{"location":"westus2","properties":{"tenantId":%q,"sku":{"family":"A","name":"standard"},"softDeleteRetentionInDays":7,
		"accessPolicies":[{"tenantId":%q,"objectId":%q,"permissions":{"keys":["all"]}}]}}`, p.admin.TenantID, p.admin.TenantID, adminObjectID(t, p))
	p.arm("PUT", sub+"/providers/Microsoft.KeyVault/vaults/rkkv", "2024-11-01", vault, 200, 201)
	kv := p.url("rkkv.vault")
	// Many vault keys (imported, so no key generation slows the set-up):
	// the migration has many secrets to re-seal.
	const keys = 150
	ecPriv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecBytes, _ := ecPriv.Bytes()
	enc := base64.RawURLEncoding.EncodeToString
	ecJWK := fmt.Sprintf(`{"key":{"kty":"EC","crv":"P-256","x":%q,"y":%q,"d":%q}}`,
		enc(ecPriv.X.FillBytes(make([]byte, 32))), enc(ecPriv.Y.FillBytes(make([]byte, 32))), enc(ecBytes))
	for i := 0; i < keys; i++ {
		p.must("PUT", fmt.Sprintf("%s/keys/ec-%03d?api-version=7.5", kv, i), vaultScope, ecJWK, 200)
	}
	var rsaKey struct {
		Key struct {
			N string `json:"n"`
			E string `json:"e"`
		} `json:"key"`
	}
	p.must("POST", kv+"/keys/rsa/create?api-version=7.5", vaultScope, `{"kty":"RSA","key_size":2048}`, 200).decode(t, &rsaKey)
	nb, _ := base64.RawURLEncoding.DecodeString(rsaKey.Key.N)
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: 65537}
	s := &secrets{plain: make([]byte, 32), job: "root key canary"}
	rand.Read(s.plain)
	s.wrapped, _ = rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, s.plain, nil)
	p.waitLRO(p.arm("PUT", sub+"/providers/Microsoft.Batch/batchAccounts/rkacct", "2024-07-01", `{"location":"westus2"}`, 200, 202))
	s.sharedKeys = string(p.arm("POST", sub+"/providers/Microsoft.Batch/batchAccounts/rkacct/listKeys", "2024-07-01", "", 200).body)
	p.must("POST", p.url("rkacct.batch")+"/jobs?api-version="+batchAPI, batchScope, `{"id":"job1","displayName":"root key canary","poolInfo":{"poolId":"pool1"}}`, 201)
	s.token = p.token(armScope)
	p.checkSecrets(t, s, keys)
	p.kill()

	fileKey := filepath.Join(p.dir, secret.RootKeyFile)
	// File → token, killed in the middle: nothing changed, the server
	// reads everything under the file key.
	migrateKilled(t, p.dir, fileKey, uri)
	p.start()
	p.checkSecrets(t, s, keys)
	p.kill()
	out, err := custody(t, "root-key", "migrate", "--data-dir", p.dir, "--from", fileKey, "--to", uri)
	if err != nil || !strings.Contains(out, fmt.Sprintf("Re-sealed %d of %d secrets", keys+1+3, keys+1+3)) {
		t.Fatalf("migration to the token: %v\n%s", err, out)
	}
	// Run again: everything is under the token already; nothing changes.
	if out, err := custody(t, "root-key", "migrate", "--data-dir", p.dir, "--from", fileKey, "--to", uri); err != nil || !strings.Contains(out, "Re-sealed 0 of") {
		t.Fatalf("second migration to the token: %v\n%s", err, out)
	}
	// The file key opens nothing now: the server refuses to start on it.
	p.log = &bytes.Buffer{}
	if out, err := custody(t, "server", "--data-dir", p.dir, "--listen", "127.0.0.1:0"); err == nil || !strings.Contains(out, "different root key") {
		t.Fatalf("a server on the old file key: %v\n%s", err, out)
	}
	// On the token, with every log line there is (the last --log-level
	// given wins), to scan them below.
	p.args = []string{"--root-key", uri, "--log-level", "debug"}
	p.start()
	p.checkSecrets(t, s, keys)
	// Restart on the token: everything reads.
	p.kill()
	p.start()
	p.checkSecrets(t, s, keys)

	// The sealing key derived in the token is nowhere in the data
	// directory, the server's environment or its log; the root key itself
	// is sensitive and not extractable.
	u, _ := hsm.ParseURI(uri)
	tok, err := hsm.Open(u)
	if err != nil {
		t.Fatal(err)
	}
	prot, err := tok.RootProtection()
	if err != nil || !prot.Sensitive || prot.Extractable || !prot.Token {
		t.Fatalf("root key protection %+v, %v: want a sensitive, non-extractable token object", prot, err)
	}
	working, err := tok.SealingKey()
	tok.Close()
	if err != nil {
		t.Fatal(err)
	}
	forms := [][]byte{working, []byte(base64.StdEncoding.EncodeToString(working)), []byte(base64.RawURLEncoding.EncodeToString(working)), []byte(hex.EncodeToString(working))}
	scan := func(what string, b []byte) {
		for _, f := range forms {
			if bytes.Contains(b, f) {
				t.Fatalf("the sealing key appears in %s", what)
			}
		}
	}
	filepath.WalkDir(p.dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			b, _ := os.ReadFile(path)
			scan(path, b)
		}
		return nil
	})
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	scan("the server's environment", environ)
	scan("the server's log", p.log.Bytes())
	if !bytes.Contains(p.log.Bytes(), []byte("object=custody-root")) {
		t.Fatalf("the debug log does not say where the root key is; is it the server's log?\n%s", p.log)
	}
	if bytes.Contains(p.log.Bytes(), []byte(hsmtest.PIN)) {
		t.Fatal("the token's PIN appears in the server's log")
	}
	p.kill()

	// Token → a new file, killed in the middle, then finished.
	newKey := filepath.Join(t.TempDir(), "new-root.key")
	migrateKilled(t, p.dir, uri, newKey)
	p.start() // still on the token
	p.checkSecrets(t, s, keys)
	p.kill()
	if out, err := custody(t, "root-key", "migrate", "--data-dir", p.dir, "--from", uri, "--to", newKey); err != nil || !strings.Contains(out, "Re-sealed") {
		t.Fatalf("migration to the new file: %v\n%s", err, out)
	}
	p.args = []string{"--root-key", newKey}
	p.start()
	p.checkSecrets(t, s, keys)
}

func newRequest(method, url, token string) (*http.Request, error) {
	req, err := http.NewRequest(method, url, nil)
	if err == nil {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req, err
}
