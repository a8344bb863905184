package crashtest_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestAuditSurvivesSIGKILL kills the server with SIGKILL while 8 clients
// unwrap keys as fast as they can, restarts it, and checks that every
// unwrap that was answered has its audit record: a call is answered only
// after its record is stored.
func TestAuditSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills a server process")
	}
	p := &proc{t: t, dir: t.TempDir(), port: freePort(t), rg: "rg-audit"}
	p.start()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.kill()
		}
	})
	sub := "/subscriptions/" + p.sub
	p.arm("PUT", sub+"/resourceGroups/"+p.rg, "2021-04-01", `{"location":"westus2"}`, 201)
	vault := fmt.Sprintf(`{"location":"westus2","properties":{"tenantId":%q,"sku":{"family":"A","name":"standard"},"softDeleteRetentionInDays":7,
		"accessPolicies":[{"tenantId":%q,"objectId":%q,"permissions":{"keys":["all"]}}]}}`, p.admin.TenantID, p.admin.TenantID, adminObjectID(t, p))
	p.arm("PUT", sub+"/resourceGroups/"+p.rg+"/providers/Microsoft.KeyVault/vaults/auditkv", "2024-11-01", vault, 200, 201)
	kv := p.url("auditkv.vault")

	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	jwk, _ := json.Marshal(map[string]any{"key": map[string]any{"kty": "RSA", "n": enc(priv.N.Bytes()), "e": enc(big.NewInt(int64(priv.E)).Bytes()),
		"d": enc(priv.D.Bytes()), "p": enc(priv.Primes[0].Bytes()), "q": enc(priv.Primes[1].Bytes())}})
	p.must("PUT", kv+"/keys/k?api-version=7.5", vaultScope, string(jwk), 200)
	wrapped, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &priv.PublicKey, make([]byte, 32), nil)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"alg":"RSA-OAEP-256","value":"` + enc(wrapped) + `"}`
	token := p.token(vaultScope)

	var answered atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				req, _ := http.NewRequest("POST", kv+"/keys/k/unwrapkey?api-version=7.5", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Content-Type", "application/json")
				resp, err := p.client.Do(req)
				if err != nil {
					return // the server is gone
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("unwrap: %d", resp.StatusCode)
					return
				}
				answered.Add(1)
			}
		})
	}
	for answered.Load() < 100 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	p.kill()
	wg.Wait()
	p.start()

	var audit struct {
		Value []struct {
			Operation string `json:"operation"`
			Outcome   string `json:"outcome"`
		} `json:"value"`
	}
	p.must("GET", kv+"/audit?api-version=7.5&key=k&top=10000", vaultScope, "", 200).decode(t, &audit)
	got := 0
	for _, r := range audit.Value {
		if r.Operation == "KeyUnwrap" && r.Outcome == "success" {
			got++
		}
	}
	if got < int(answered.Load()) {
		t.Fatalf("%d unwrap records after SIGKILL, but %d unwraps were answered: answered calls lost their records", got, answered.Load())
	}
	t.Logf("%d unwraps answered before SIGKILL, %d records after restart", answered.Load(), got)
}
