// Package crashtest kills a real Custody server process with SIGKILL at many
// points while it changes a batch account's key, restarts it on the same
// data directory, and checks that the account is consistent (the old key
// setting or the new one, never a mix) and that every job and task reads
// back intact.
package crashtest_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"custody/cli"
	"custody/server"
)

// The test binary re-executes itself as `custody server` when this variable
// is set, so the server runs as a separate process that can be killed.
const childEnv = "CUSTODY_CRASHTEST_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

const batchAPI = "2024-07-01.20.0"

type proc struct {
	t       *testing.T
	dir     string
	port    int
	cmd     *exec.Cmd
	log     *bytes.Buffer
	client  *http.Client
	admin   server.AdminCredentials
	tokens  map[string]string
	sub, rg string
	// args are more `custody server` flags (a root key).
	args []string
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs the server and waits until it answers.
func (p *proc) start() {
	p.t.Helper()
	os.Remove(filepath.Join(p.dir, server.EndpointFile))
	p.log = &bytes.Buffer{}
	p.cmd = exec.Command(os.Args[0], append([]string{"server", "--data-dir", p.dir, "--listen", fmt.Sprintf("127.0.0.1:%d", p.port),
		"--key-probe-interval", "300ms", "--log-level", "warn"}, p.args...)...)
	p.cmd.Env = append(os.Environ(), childEnv+"=1")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(filepath.Join(p.dir, server.EndpointFile)); err == nil && len(b) > 0 {
			if p.client == nil {
				pemBytes, err := os.ReadFile(filepath.Join(p.dir, "ca.pem"))
				if err != nil {
					p.t.Fatal(err)
				}
				pool := x509.NewCertPool()
				pool.AppendCertsFromPEM(pemBytes)
				p.client = &http.Client{Transport: server.Transport(pool, "localhost", fmt.Sprintf("127.0.0.1:%d", p.port)), Timeout: 20 * time.Second}
			}
			if resp, err := p.client.Get(p.url("management") + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					if p.admin.ClientID == "" {
						b, err := os.ReadFile(filepath.Join(p.dir, server.AdminFile))
						if err != nil {
							p.t.Fatal(err)
						}
						json.Unmarshal(b, &p.admin)
						p.sub = p.admin.SubscriptionID
					}
					p.tokens = map[string]string{}
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Fatalf("server did not start:\n%s", p.log)
}

// kill ends the server with SIGKILL: no shutdown code runs.
func (p *proc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
	p.client.CloseIdleConnections()
}

func (p *proc) url(name string) string { return fmt.Sprintf("https://%s.localhost:%d", name, p.port) }

func (p *proc) token(scope string) string {
	if tok := p.tokens[scope]; tok != "" {
		return tok
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {p.admin.ClientID}, "client_secret": {p.admin.ClientSecret}, "scope": {scope}}
	resp, err := p.client.PostForm(p.url("login")+"/"+p.admin.TenantID+"/oauth2/v2.0/token", form)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	if body.AccessToken == "" {
		p.t.Fatalf("no token for %s: %d", scope, resp.StatusCode)
	}
	p.tokens[scope] = body.AccessToken
	return body.AccessToken
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (p *proc) do(method, rawURL, scope, body string) (reply, error) {
	req, _ := http.NewRequest(method, rawURL, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+p.token(scope))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}, nil
}

func (p *proc) must(method, rawURL, scope, body string, want ...int) reply {
	p.t.Helper()
	r, err := p.do(method, rawURL, scope, body)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	for _, w := range want {
		if r.status == w {
			return r
		}
	}
	p.t.Fatalf("%s %s: %d %s", method, rawURL, r.status, r.body)
	return r
}

const (
	armScope   = "https://management.azure.com/.default"
	vaultScope = "https://vault.azure.net/.default"
	batchScope = "https://batch.core.windows.net//.default"
)

func (p *proc) arm(method, path, apiVersion, body string, want ...int) reply {
	p.t.Helper()
	return p.must(method, p.url("management")+path+"?api-version="+apiVersion, armScope, body, want...)
}

// waitLRO follows a 202's Location until it is done.
func (p *proc) waitLRO(r reply) {
	p.t.Helper()
	loc := r.header.Get("Location")
	for i := 0; i < 200 && loc != ""; i++ {
		got := p.must("GET", loc, armScope, "", 200, 202, 204)
		if got.status != 202 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type account struct {
	Properties struct {
		ProvisioningState string `json:"provisioningState"`
		Encryption        struct {
			KeySource          string `json:"keySource"`
			KeyVaultProperties struct {
				KeyIdentifier string `json:"keyIdentifier"`
			} `json:"keyVaultProperties"`
		} `json:"encryption"`
		EncryptionStatus struct {
			State           string `json:"state"`
			Reason          string `json:"reason"`
			KeyVersionInUse string `json:"keyVersionInUse"`
		} `json:"encryptionStatus"`
	} `json:"properties"`
}

func TestKeyChangesSurviveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills a server process many times")
	}
	p := &proc{t: t, dir: t.TempDir(), port: freePort(t), rg: "rg-crash"}
	p.start()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.kill()
		}
	})

	// Set-up: group, identity, vault with purge protection and policies,
	// two keys, and a customer-key account holding a job with tasks.
	sub := "/subscriptions/" + p.sub
	p.arm("PUT", sub+"/resourceGroups/"+p.rg, "2021-04-01", `{"location":"westus2"}`, 201)
	var ident struct {
		ID         string `json:"id"`
		Properties struct {
			PrincipalID string `json:"principalId"`
		} `json:"properties"`
	}
	p.arm("PUT", sub+"/resourceGroups/"+p.rg+"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/crash-id", "2023-01-31", `{"location":"westus2"}`, 201).decode(t, &ident)
	adminOID := adminObjectID(t, p)
	vault := fmt.Sprintf(`{"location":"westus2","properties":{"tenantId":%q,"sku":{"family":"A","name":"standard"},"enablePurgeProtection":true,"softDeleteRetentionInDays":7,
		"accessPolicies":[{"tenantId":%q,"objectId":%q,"permissions":{"keys":["all"]}},{"tenantId":%q,"objectId":%q,"permissions":{"keys":["get","wrapKey","unwrapKey"]}}]}}`,
		p.admin.TenantID, p.admin.TenantID, adminOID, p.admin.TenantID, ident.Properties.PrincipalID)
	p.arm("PUT", sub+"/resourceGroups/"+p.rg+"/providers/Microsoft.KeyVault/vaults/crashkv", "2024-11-01", vault, 200, 201)
	kv := p.url("crashkv.vault")
	newVersion := func(name string) string {
		var kb struct {
			Key struct {
				KID string `json:"kid"`
			} `json:"key"`
		}
		p.must("POST", kv+"/keys/"+name+"/create?api-version=7.5", vaultScope, `{"kty":"RSA","key_size":2048}`, 200).decode(t, &kb)
		return kb.Key.KID
	}
	k1v1, k2v1 := newVersion("k1"), newVersion("k2")
	acct := sub + "/resourceGroups/" + p.rg + "/providers/Microsoft.Batch/batchAccounts/crash1"
	create := fmt.Sprintf(`{"location":"westus2","identity":{"type":"UserAssigned","userAssignedIdentities":{%q:{}}},
		"properties":{"encryption":{"keySource":"Microsoft.KeyVault","keyVaultProperties":{"keyIdentifier":%q}}}}`, ident.ID, k1v1)
	p.waitLRO(p.arm("PUT", acct, "2024-07-01", create, 200, 202))

	batchURL := p.url("crash1.batch")
	p.must("POST", batchURL+"/jobs?api-version="+batchAPI, batchScope, `{"id":"job1","displayName":"canary job","poolInfo":{"poolId":"pool1"}}`, 201)
	want := map[string]string{}
	var tasks []string
	for i := 0; i < 20; i++ {
		id := fmt.Sprintf("t%02d", i)
		want[id] = fmt.Sprintf("echo crash-canary-%d", i)
		tasks = append(tasks, fmt.Sprintf(`{"id":%q,"commandLine":%q}`, id, want[id]))
	}
	p.must("POST", batchURL+"/jobs/job1/addtaskcollection?api-version="+batchAPI, batchScope, `{"value":[`+strings.Join(tasks, ",")+`]}`, 200)

	// Each round starts a key change, kills the server after a random
	// delay, restarts it and checks consistency.
	k1v2 := newVersion("k1")
	versionless := kv + "/keys/k2"
	targets := []struct{ source, id string }{
		{"Microsoft.KeyVault", k1v2},
		{"Microsoft.KeyVault", k2v1},
		{"Microsoft.Batch", ""},
		{"Microsoft.KeyVault", versionless},
		{"Microsoft.KeyVault", k1v1},
	}
	rounds := 40
	outcomes := map[string]int{}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < rounds; round++ {
		var before account
		p.arm("GET", acct, "2024-07-01", "", 200).decode(t, &before)
		target := targets[round%len(targets)]
		body := fmt.Sprintf(`{"properties":{"encryption":{"keySource":%q}}}`, target.source)
		if target.id != "" {
			body = fmt.Sprintf(`{"properties":{"encryption":{"keySource":%q,"keyVaultProperties":{"keyIdentifier":%q}}}}`, target.source, target.id)
		}
		done := make(chan int, 1)
		go func() {
			r, err := p.do("PATCH", p.url("management")+acct+"?api-version=2024-07-01", armScope, body)
			if err != nil {
				done <- -1
				return
			}
			done <- r.status
		}()
		time.Sleep(time.Duration(rng.IntN(60)) * time.Millisecond)
		p.kill()
		status := <-done
		if status == -1 {
			outcomes["killed mid-request"]++
		}
		p.start()

		var after account
		p.arm("GET", acct, "2024-07-01", "", 200).decode(t, &after)
		if after.Properties.ProvisioningState != "Succeeded" {
			t.Fatalf("round %d: provisioningState %s", round, after.Properties.ProvisioningState)
		}
		enc := after.Properties.Encryption
		gotNew := enc.KeySource == target.source && enc.KeyVaultProperties.KeyIdentifier == target.id
		gotOld := enc.KeySource == before.Properties.Encryption.KeySource && enc.KeyVaultProperties.KeyIdentifier == before.Properties.Encryption.KeyVaultProperties.KeyIdentifier
		if !gotNew && !gotOld {
			t.Fatalf("round %d: encryption %+v is neither the old %+v nor the new %+v", round, enc, before.Properties.Encryption, target)
		}
		if status == 200 && !gotNew {
			t.Fatalf("round %d: the change was acknowledged but the old setting is stored", round)
		}
		switch {
		case gotNew && gotOld:
			outcomes["unchanged target"]++
		case gotNew:
			outcomes["new"]++
		default:
			outcomes["old"]++
		}
		// The stored wrap must belong to the stored setting.
		inUse := after.Properties.EncryptionStatus.KeyVersionInUse
		if enc.KeySource == "Microsoft.Batch" {
			if !strings.HasPrefix(inUse, "platform-") {
				t.Fatalf("round %d: platform setting but key in use %q", round, inUse)
			}
		} else if !strings.HasPrefix(inUse, enc.KeyVaultProperties.KeyIdentifier) {
			t.Fatalf("round %d: identifier %s but key in use %q", round, enc.KeyVaultProperties.KeyIdentifier, inUse)
		}
		// All data reads back.
		for id, cmd := range want {
			var task struct {
				CommandLine string `json:"commandLine"`
			}
			p.must("GET", batchURL+"/jobs/job1/tasks/"+id+"?api-version="+batchAPI, batchScope, "", 200).decode(t, &task)
			if task.CommandLine != cmd {
				t.Fatalf("round %d: task %s command line %q, want %q", round, id, task.CommandLine, cmd)
			}
		}
	}
	t.Logf("outcomes after %d kills: %v", rounds, outcomes)
	if outcomes["old"] == 0 && outcomes["new"] == 0 {
		t.Fatal("no round changed anything or was interrupted; the test did not exercise key changes")
	}
}

// adminObjectID finds the admin's object id through the directory.
func adminObjectID(t *testing.T, p *proc) string {
	t.Helper()
	var list struct {
		Value []struct {
			ID string `json:"id"`
		} `json:"value"`
	}
	p.must("GET", p.url("graph")+"/v1.0/servicePrincipals?$filter="+url.QueryEscape("appId eq '"+p.admin.ClientID+"'"), "https://graph.microsoft.com/.default", "", 200).decode(t, &list)
	if len(list.Value) != 1 {
		t.Fatalf("admin principal not found: %+v", list)
	}
	return list.Value[0].ID
}
