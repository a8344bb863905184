package compat_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"testing"

	"custody/server/servertest"
)

// The wrap/unwrap benchmarks measure RSA-2048 RSA-OAEP-256 through the REST
// API (TLS, HTTP/2 with keep-alive, token verification, access policy check,
// audit) beside the same operation in crypto/rsa, so that the API's overhead
// shows as a ratio. Run:
//
//	go test -run '^$' -bench 'Wrap|Unwrap' -benchtime 3s ./compat/

type kvBench struct {
	ts      *servertest.TestServer
	token   string
	kid     string
	pub     *rsa.PublicKey
	priv    *rsa.PrivateKey
	wrapped []byte
}

func newKVBench(b *testing.B) *kvBench {
	b.Helper()
	ts := servertest.New(b, nil)
	tok := adminToken(b, ts)
	MustGroup(b, ts, tok, "rg")
	mustKeyVaultTB(b, ts, "rg", "kv-bench", adminObjectID(b, ts))
	kb := &kvBench{ts: ts, token: vaultToken(b, ts)}
	// Import a key we know, so the raw benchmarks use the same one.
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	priv.Precompute()
	enc := base64.RawURLEncoding.EncodeToString
	jwk := map[string]any{"key": map[string]any{"kty": "RSA", "n": enc(priv.N.Bytes()), "e": enc(big.NewInt(int64(priv.E)).Bytes()),
		"d": enc(priv.D.Bytes()), "p": enc(priv.Primes[0].Bytes()), "q": enc(priv.Primes[1].Bytes())}}
	body, _ := json.Marshal(jwk)
	r := kvRaw(b, ts, kb.token, "PUT", "kv-bench", "/keys/bench?api-version=2025-07-01", string(body))
	wantStatus(b, r, 200)
	var bundle struct {
		Key struct {
			Kid string `json:"kid"`
		} `json:"key"`
	}
	if err := json.Unmarshal(r.Body, &bundle); err != nil {
		b.Fatal(err)
	}
	kb.kid, kb.priv, kb.pub = bundle.Key.Kid, priv, &priv.PublicKey
	kb.wrapped, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, kb.pub, bytes.Repeat([]byte{1}, 32), nil)
	if err != nil {
		b.Fatal(err)
	}
	return kb
}

// clients returns the two ways a client may reach the API: one HTTP/2
// connection (what the Azure SDK's default transport negotiates) and a pool
// of HTTP/1.1 keep-alive connections.
func (kb *kvBench) clients() map[string]*http.Client {
	h1 := kb.ts.Client.Transport.(*http.Transport).Clone()
	h1.ForceAttemptHTTP2 = false
	h1.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	h1.TLSClientConfig = h1.TLSClientConfig.Clone()
	h1.TLSClientConfig.NextProtos = []string{"http/1.1"}
	h1.MaxIdleConnsPerHost = 16
	return map[string]*http.Client{"h2": kb.ts.Client, "http1": {Transport: h1}}
}

func (kb *kvBench) runAll(b *testing.B, op string, value []byte) {
	clients := kb.clients()
	for _, proto := range []string{"h2", "http1"} {
		b.Run(proto, func(b *testing.B) { kb.run(b, clients[proto], op, value) })
	}
}

func (kb *kvBench) run(b *testing.B, client *http.Client, op string, value []byte) {
	body := []byte(`{"alg":"RSA-OAEP-256","value":"` + base64.RawURLEncoding.EncodeToString(value) + `"}`)
	url := kb.kid + "/" + op + "?api-version=2025-07-01"
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+kb.token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("%s: status %d", op, resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func BenchmarkKeyVaultAPIWrapKey(b *testing.B) {
	kb := newKVBench(b)
	kb.runAll(b, "wrapkey", bytes.Repeat([]byte{1}, 32))
}

func BenchmarkKeyVaultAPIUnwrapKey(b *testing.B) {
	kb := newKVBench(b)
	kb.runAll(b, "unwrapkey", kb.wrapped)
}

func BenchmarkRawRSAWrap(b *testing.B) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	dek := bytes.Repeat([]byte{1}, 32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &priv.PublicKey, dek, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func BenchmarkRawRSAUnwrap(b *testing.B) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	priv.Precompute()
	wrapped, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, &priv.PublicKey, bytes.Repeat([]byte{1}, 32), nil)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := rsa.DecryptOAEP(sha256.New(), nil, priv, wrapped, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
